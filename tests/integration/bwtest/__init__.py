"""Tools for bulwark's black-box integration tests: a raw HTTP/1.1 client,
a scripted origin, a YAML writer and process helpers. Standard library only."""
