"""Template text for the demo data: referral context with negation and hedging, and full reports.

Which finding the clinical context reveals is decided by the demo generator: findings in
`NOTE_PHRASES` are told by the INDICATION / HISTORY (positive, hedged "cannot exclude", or negated
"no known"); image-only findings appear in the context only as uninformative negations drawn
independently of the truth, as referral notes do ("no known effusion").
"""

from __future__ import annotations

import numpy as np

# finding -> (positive phrases, hedged phrases, negated phrases)
NOTE_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "Pneumonia": (
        ("fever and productive cough for 4 days, treated for community-acquired pneumonia",
         "febrile with rigors and purulent sputum, pneumonia on antibiotics"),
        ("cough, cannot exclude pneumonia", "low-grade temperature, possible early pneumonia"),
        ("afebrile, no cough, no signs of infection", "no fever; pneumonia is not suspected"),
    ),
    "Fracture": (
        ("fall from ladder with left rib fractures, point tenderness over ribs",
         "motor vehicle collision, known clavicle fracture"),
        ("chest wall pain after minor fall, query rib fracture",),
        ("no trauma history", "no recent falls or injury"),
    ),
    "Pleural Other": (
        ("prior asbestos exposure with known pleural plaques", "history of pleural thickening after empyema"),
        ("shipyard worker, ?pleural plaque",),
        ("no occupational exposure",),
    ),
    "Atelectasis": (
        ("post-operative day 2 after upper abdominal surgery, shallow breathing and low volumes",
         "splinting after laparotomy, basal collapse suspected by the surgical team"),
        ("reduced breath sounds post-op, ?collapse",),
        ("ambulating well, deep breathing normal",),
    ),
    "Edema": (
        ("decompensated heart failure with fluid overload and orthopnea",
         "known CHF, weight up 4 kg, worsening leg swelling"),
        ("dyspnoea, rule out fluid overload",),
        ("no history of heart failure",),
    ),
    "Consolidation": (
        ("aspiration event yesterday, right-sided crackles", "hypoxic with focal bronchial breathing"),
        ("focal crackles, ?consolidation",),
        ("chest clear on auscultation",),
    ),
    "Support Devices": (
        ("line placement today, check position of central venous catheter",
         "intubated in ICU, endotracheal tube and nasogastric tube in situ"),
        ("?malpositioned line",),
        ("no lines or tubes",),
    ),
    "Enlarged Cardiomediastinum": (
        ("known thoracic aortic aneurysm, widened mediastinum on prior film",),
        ("hypertensive, query mediastinal widening",),
        ("no known aortic disease",),
    ),
}
IMAGE_ONLY_NEGATIONS = (
    "no known effusion", "no prior lung nodules documented", "no history of pneumothorax",
    "no cardiac history", "no known lung lesion",
)
INDICATIONS = (
    "shortness of breath", "chest pain", "pre-operative assessment", "follow-up", "cough",
    "routine check", "desaturation", "dyspnoea on exertion",
)
REPORT_POSITIVE = {
    "Cardiomegaly": "The cardiac silhouette is enlarged.",
    "Enlarged Cardiomediastinum": "The mediastinum is widened.",
    "Pleural Effusion": "Pleural effusion with a meniscus at the base.",
    "Edema": "Hazy perihilar opacities consistent with pulmonary edema.",
    "Consolidation": "Focal consolidation in the lung.",
    "Lung Lesion": "A well-defined pulmonary nodule is seen.",
    "Pneumothorax": "Apical pneumothorax with a visible pleural line.",
    "Support Devices": "Support device in place.",
    "Pneumonia": "Findings may represent pneumonia.",
    "Fracture": "Rib fracture.",
    "Pleural Other": "Pleural thickening.",
    "Atelectasis": "Bibasal atelectasis.",
    "Lung Opacity": "Lung opacity.",
}
REPORT_NEGATIVE = {"Pneumothorax": "No pneumothorax.", "Pleural Effusion": "No pleural effusion.", "Cardiomegaly": "Heart size is normal.", "Consolidation": "No focal consolidation."}


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(0, len(options)))]


def write_context(rng: np.random.Generator, note_states: dict[str, str], age: int, sex: str) -> tuple[str, str]:
    """INDICATION and HISTORY text.

    Args:
        rng: random generator.
        note_states: finding -> "positive" | "uncertain" | "negative" for the note-told findings.
        age, sex: shown in the indication as real referrals do.

    Returns:
        (indication, history).
    """
    told, history = [], []
    for finding, state in note_states.items():
        positive, hedged, negated = NOTE_PHRASES[finding]
        if state == "positive":
            told.append(_pick(rng, positive))
        elif state == "uncertain":
            told.append(_pick(rng, hedged))
        elif rng.random() < 0.4:
            history.append(_pick(rng, negated))
    if rng.random() < 0.6:
        history.append(_pick(rng, IMAGE_ONLY_NEGATIONS))
    order = rng.permutation(len(told)).tolist()
    indication = f"{age}-year-old {'woman' if sex == 'F' else 'man'} with {_pick(rng, INDICATIONS)}"
    if told:
        indication += "; " + "; ".join(told[i] for i in order[:1])
    history += [told[i] for i in order[1:]]
    return indication + ".", ("; ".join(history).capitalize() + ".") if history else "None relevant."


def write_report(rng: np.random.Generator, indication: str, history: str, states: dict[str, str]) -> str:
    """A full report: context plus FINDINGS and IMPRESSION naming the labelled findings."""
    lines = [REPORT_POSITIVE[f] if s == "positive" else f"Possible {f.lower()}." for f, s in states.items() if s in ("positive", "uncertain") and f in REPORT_POSITIVE]
    findings = " ".join(lines) or "Lungs are clear."
    negatives = " ".join(text for f, text in REPORT_NEGATIVE.items() if states.get(f) == "negative" and rng.random() < 0.5)
    impression = " ".join(lines[:2]) or "No acute cardiopulmonary process."
    return (
        "                                 FINAL REPORT\n"
        " EXAMINATION:  CHEST RADIOGRAPH\n\n"
        f" INDICATION:  {indication}\n\n"
        f" HISTORY:  {history}\n\n"
        " COMPARISON:  None.\n\n"
        f" FINDINGS:\n {findings} {negatives}\n\n"
        f" IMPRESSION:\n {impression}\n"
    )
