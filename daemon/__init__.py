"""The daemon: control server, instrument workers, run files, the data stream, the client and the CLI."""
