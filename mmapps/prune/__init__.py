"""Model compression by pruning: structured channels (torch-pruning), text layer dropping, unstructured magnitude.

`mmapps.prune.channels` removes whole channels so dense kernels do less work; `mmapps.prune.layers`
drops transformer layers of a frozen text encoder; `mmapps.prune.magnitude` zeroes single weights
(files compress, dense kernels are not faster). `mmapps.prune.structure` records the new widths in
``cfg.model.pruned`` so that ``build_model`` rebuilds the pruned architecture and the pruned
checkpoint reloads, evaluates and exports like any other. `mmapps.prune.workflow` is the verb.
"""
