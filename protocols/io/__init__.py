"""Files in and out: reading what ``echemd analyze`` and ``echemd plot`` take, writing what other tools open.

- :mod:`.readers`: echemd run files, Gamry EXPLAIN (.DTA) and text tables -> named columns in SI units;
- :mod:`.text_tables`: delimited text from other software (EC-Lab .mpt, spreadsheets, echemd's CSV);
- :mod:`.export`: a run file as CSV or Gamry .DTA; :mod:`.bdf`: as a Battery Data Format table;
- :mod:`.plots`: the figures of run files and of the files the readers take.

The numbers come from :mod:`echemd.protocols.analysis`; a run file is read through
:mod:`echemd.daemon.runfile_reader`.
"""
