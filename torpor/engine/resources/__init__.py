"""One module per kind of kernel object, each with a dump and a restore step."""
