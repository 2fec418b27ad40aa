"""certssb.execution: how the wide steps run (never imported by ``certssb.core``).

- ``checkpoints`` -- one file per finished chunk of models; resuming.
- ``training``    -- train the ensemble: restore finished chunks, train the rest locally or on Ray.
- ``ray``         -- shards of models as Ray tasks, for training and for votes (optional extra ``ray``).
- ``ray_options`` -- the ``ensemble.ray`` options, probing a cluster address, connecting to Ray.
- ``audit``       -- retraining inside the certified radii.
"""
