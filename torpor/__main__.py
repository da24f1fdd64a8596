from torpor.cli.main import entry

entry()
