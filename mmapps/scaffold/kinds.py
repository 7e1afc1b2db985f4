"""What the template writes for each modality kind: the demo file, its reader, its encoder.

Each `KindTemplate` holds the code of two functions of the generated ``data.py``:
``write_<kind>(path, signal, rng)`` (a demo file whose content depends on the latent target
vector ``signal``, so the task is learnable from it) and ``read_<kind>(path)`` (the file -> the
value `mmapps.data.Sample.inputs` holds). Tabular modalities live in ``samples.csv`` itself.
A new kind joins the template by adding one entry to `KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TABULAR_FEATURES = 6


@dataclass(frozen=True)
class KindTemplate:
    """The template of one modality kind.

    Attributes:
        kind: `mmapps.domain.ModalitySpec.kind`.
        layout: `ModalitySpec.layout`.
        reader: `ModalitySpec.reader` (what ``mmapps <domain> info`` shows).
        encoder: the ``model.encoders`` entry of the generated recipes.
        suffix: the demo file suffix (None: the values are columns of ``samples.csv``).
        imports: import lines the functions need.
        writer: source of ``write_<kind>(path: Path, signal: np.ndarray, rng) -> None``.
        read: source of ``read_<kind>(path: Path) -> value`` (raises ValueError naming the file).
    """

    kind: str
    layout: str
    reader: str
    encoder: dict[str, Any]
    suffix: str | None
    imports: tuple[str, ...] = ()
    writer: str = ""
    read: str = ""
    suffixes: tuple[str, ...] = field(default_factory=tuple)


IMAGE = KindTemplate(
    kind="image",
    layout="fixed",
    reader="PNG/JPEG/TIFF (Pillow), grayscale, 32x32",
    encoder={"name": "image_cnn", "options": {"backbone": "small_cnn", "in_channels": 1, "width": 8}},
    suffix=".png",
    suffixes=(".png", ".jpg", ".jpeg", ".tif", ".tiff"),
    imports=("from PIL import Image",),
    writer='''def write_image(path: Path, signal: np.ndarray, rng: np.random.Generator) -> None:
    """A 32x32 grayscale PNG: one bright square per target component, brightness = its value."""
    pixels = rng.normal(40.0, 20.0, (IMAGE_SIZE, IMAGE_SIZE))
    for k, value in enumerate(signal):
        row, col = divmod(k % 9, 3)
        pixels[2 + row * 10 : 10 + row * 10, 2 + col * 10 : 10 + col * 10] += 150.0 * float(value)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


''',
    read='''def read_image(path: Path) -> torch.Tensor:
    """An image file -> (1, IMAGE_SIZE, IMAGE_SIZE) float32 in [0, 1] (converted to grayscale, resized)."""
    try:
        with Image.open(path) as image:
            image = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE))
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ValueError) as err:  # Pillow raises these for truncated or unknown files
        raise ValueError(f"{path}: not a readable image ({err})") from None
    return torch.from_numpy(pixels).unsqueeze(0)


''',
)

TEXT = KindTemplate(
    kind="text",
    layout="text",
    reader="UTF-8 text file (.txt)",
    encoder={"name": "text_transformer", "options": {"finetune": "frozen", "max_length": 48}},
    suffix=".txt",
    suffixes=(".txt",),
    writer='''def write_text(path: Path, signal: np.ndarray, rng: np.random.Generator) -> None:
    """A short note naming each target component; one statement in ten is wrong (noisy labels)."""
    words = []
    for k, value in enumerate(signal):
        high = (value > 0.5) != (rng.random() < 0.1)
        words.append(f"{LABELS[k % len(LABELS)]} {'present' if high else 'absent'}.")
    path.write_text(" ".join(rng.permutation(words)) + "\\n", encoding="utf-8")


''',
    read='''def read_text(path: Path) -> str:
    """A UTF-8 text file -> its text (the text encoder tokenises)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


''',
)

TABULAR = KindTemplate(
    kind="tabular",
    layout="fixed",
    reader=f"CSV columns <name>_0..<name>_{TABULAR_FEATURES - 1} of samples.csv",
    encoder={"name": "tabular_mlp", "options": {"in_features": TABULAR_FEATURES, "hidden": 32}},
    suffix=None,
)

SIGNAL = KindTemplate(
    kind="signal",
    layout="padded",
    reader="multichannel 1-D signal: .npy (S, C) at SIGNAL_FS Hz, CSV or WFDB (mmapps.readers.signal)",
    encoder={"name": "signal_resnet1d", "options": {"in_channels": 3, "width": 16, "stride": 16}},
    suffix=".npy",
    suffixes=(".npy", ".csv", ".hea"),
    imports=("from mmapps.readers.signal import read_signal",),
    writer='''def write_signal(path: Path, signal: np.ndarray, rng: np.random.Generator) -> None:
    """A (S, C) float32 .npy at SIGNAL_FS Hz: each target component adds a sine of its own frequency to one channel."""
    t = np.arange(SIGNAL_SECONDS * SIGNAL_FS) / SIGNAL_FS
    data = rng.normal(0.0, 0.5, (t.size, SIGNAL_CHANNELS))
    for k, value in enumerate(signal):
        data[:, k % SIGNAL_CHANNELS] += float(value) * np.sin(2 * np.pi * (2.0 + 3.0 * k) * t + rng.uniform(0, 2 * np.pi))
    np.save(path, data.astype(np.float32), allow_pickle=False)


''',
    read='''def read_signal_file(path: Path) -> torch.Tensor:
    """A .npy (S, C) at SIGNAL_FS Hz, a CSV with a time column, or a WFDB record -> (S, C) float32 at SIGNAL_FS Hz."""
    record = read_signal(path, fs=SIGNAL_FS if path.suffix.lower() == ".npy" else None, target_fs=SIGNAL_FS)
    if record.data.shape[1] != SIGNAL_CHANNELS:
        raise ValueError(f"{path}: {record.data.shape[1]} channels ({', '.join(record.channels)}), expected {SIGNAL_CHANNELS}")
    return torch.from_numpy(record.data)


''',
)

KINDS: dict[str, KindTemplate] = {"image": IMAGE, "text": TEXT, "tabular": TABULAR, "signal": SIGNAL}
