"""What `edgeqat --help` shows: plain placeholders (TEXT, INTEGER, PATH, DEVICE) rather than
Python types, no placeholder after a flag, and the commands in panels, everyday ones first.

Applied to the click command tree Typer builds, once, before it runs (:func:`tidy`)."""

from __future__ import annotations

from typing import Any

# Panels in the order they print; a command in none goes to the last.
PANELS = (
    ("Results and models", ("report", "ui", "history", "promote", "rollback", "export")),
    ("Devices", ("devices", "validate", "recommend")),
    ("Running the pipeline", ("stage", "pipeline", "ci")),
    ("Project set-up", ("check-params", "generate", "dvc", "webhook")),
)
# Placeholders named for what the value is, by option.
NAMED = {"--device": "DEVICE", "--devices": "DEVICE", "--model": "MODEL", "--alias": "ALIAS", "--tag": "KEY=VALUE",
         "--version": "VERSION", "--by": "NAME", "--host": "HOST", "--url": "URL", "--reason": "TEXT",
         "--params": "PATH"}
BY_TYPE = {int: "INTEGER", float: "NUMBER", str: "TEXT", bool: "BOOLEAN"}


def _placeholder(param: Any) -> str:
    """TEXT, INTEGER, NUMBER, PATH, [a|b], or a name from :data:`NAMED`; nothing for a flag."""
    import typing

    if getattr(param, "is_flag", False):
        return ""
    for opt in getattr(param, "opts", ()):
        if opt in NAMED:
            return NAMED[opt]
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return "VALUE"
    if desc.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
    if desc.is_path or desc.is_file:
        return "PATH"
    ann = desc.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (list, tuple) or (args and typing.get_origin(ann) is typing.Union):
        ann = args[0] if args else str
    return BY_TYPE.get(ann, "VALUE")


def _argument(param: Any) -> None:
    """NAME in the usage line (optional: [NAME]) and the help's name column, its kind beside it."""
    name, kind = param.name.upper(), _placeholder(param)
    param.metavar = name
    param._usage_display_name = lambda: name if param.required else f"[{name}]"
    param.display_type_rich = lambda ctx: kind


def _plain(command: Any) -> None:
    from typer._click.core import Context

    for param in command.params:
        if getattr(param, "param_type_name", "") == "argument":
            _argument(param)
        elif param.metavar is None:
            param.metavar = _placeholder(param)
    try:
        help_opt = command.get_help_option(Context(command))
    except Exception:  # noqa: BLE001 - only cosmetics
        help_opt = None
    if help_opt is not None:
        help_opt.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)


def tidy(root: Any) -> Any:
    """Plain placeholders everywhere; the root's commands in :data:`PANELS`, in that order."""
    _plain(root)
    rank = {name: (p, i) for p, (_, names) in enumerate(PANELS) for i, name in enumerate(names)}
    order = sorted(root.commands, key=lambda n: rank.get(n, (len(PANELS), 0)))
    root.commands = {n: root.commands[n] for n in order}
    for name, cmd in root.commands.items():
        panel = rank.get(name, (len(PANELS) - 1, 0))[0]
        cmd.rich_help_panel = PANELS[panel][0]
    return root
