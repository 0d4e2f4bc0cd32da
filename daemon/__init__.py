"""The daemon: control server, instrument queues, hosts and runners, run files, the data stream, the client and the CLI."""
