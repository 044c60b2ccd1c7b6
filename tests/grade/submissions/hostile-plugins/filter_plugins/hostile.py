"""A filter plugin that writes a marker on whatever machine loads it."""

import pathlib

pathlib.Path("/tmp/dcgan-hostile-plugin").write_text("loaded\n")


class FilterModule:
    def filters(self):
        return {"dcgan_hostile_filter": lambda value: value}
