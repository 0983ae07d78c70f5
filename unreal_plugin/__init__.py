"""Source of the Greenlight Unreal plugin; ``python -m unreal_plugin.build OUT`` assembles it."""
