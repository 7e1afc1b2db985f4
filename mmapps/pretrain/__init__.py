"""Self-supervised multimodal pretraining: masked modelling per modality, L = sum_m lambda_m L_m (+ contrastive).

`mmapps.pretrain.contract` is the plugin contract (light: no heavy imports beyond torch); the
objectives of the core encoder kinds are in `mmapps.pretrain.kinds`, the model that combines them
in `mmapps.pretrain.model`, the workflow behind ``mmapps <domain> pretrain`` in
`mmapps.pretrain.workflow` and ``train --init`` in `mmapps.pretrain.init`. See docs/pretraining.md.
"""
