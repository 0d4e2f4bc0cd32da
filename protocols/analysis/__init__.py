"""The numerics of the science, on numpy arrays: no instrument, no file.

- :mod:`.shorts`: the short detector (a step's watch, a run's monitor) and its criterion;
- :mod:`.detection`: the voltage limit of a step, the first sample beyond a limit, a c-AFM sweep's triggering bias;
- :mod:`.streaming`: the block-by-block building blocks they share (any partition, the same answer);
- :mod:`.eis_fitting`: equivalent-circuit fits (impedance.py) from data-driven initial guesses;
- :mod:`.kramers_kronig`: the linear Kramers-Kronig test of a spectrum;
- :mod:`.records`: analyses of whole records, what ``echemd analyze`` prints.

The protocols (one package up) use the detectors live; ``echemd analyze`` and the plots use the
same functions on files (:mod:`echemd.protocols.io`).
"""
