"""Options that features add to ``sim boot``, one module per feature.

Each module has ``add_boot_options(parser)``, ``apply_boot_options(args,
config, extra) -> extra`` (consuming the extra arguments it understands) and
may have ``wrap_run(args, guest, run) -> run``. They sit at the command-line
layer: they may build a run (switches, peers, second guests) from the
layers below. sim/bootcmd.py lists them.
"""
