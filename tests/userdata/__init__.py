"""A user's own datasets, as a space file's ``dataset.function`` imports them (the tests of
"Bring your own dataset"); :mod:`tests.userdata.broken` holds the deliberately bad ones."""
