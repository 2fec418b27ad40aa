"""certssb.core: the science, framework-free (plain torch / numpy / scipy). The data sources are in
``certssb.io``, which imports core, never the reverse.

One module per idea:

- ``validation`` -- parameter checks with one clear error (:class:`ConfigError`).
- ``splits``     -- the split dict, class selection, stratified splits and subsamples, fingerprints.
- ``triggers``   -- backdoor triggers (a name -> function registry) and their realised norms.
- ``poisoning``  -- backdoor poisoning (dirty / clean label), certifier attacks (Lorenz et al.).
- ``noise``      -- the reproducible Gaussian noise plan (seed, model index, sample index).
- ``models``     -- base classifiers by name.
- ``sigma``      -- Cert-SSB's sample-specific sigma by stochastic gradient ascent.
- ``ensemble``   -- training M smoothed models (sequential / vectorised / ray backends).
- ``certify``    -- votes, Clopper-Pearson / Hoeffding bounds, certified radius, abstention.
- ``storage``    -- Cert-SSB's storage-update certification.
- ``metrics``    -- clean accuracy, attack success rate, certified accuracy at radii.
- ``artifacts``  -- typed views of the artifact dicts passed between pipelines; the one lineage check.
"""
