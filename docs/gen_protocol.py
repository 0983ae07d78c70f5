"""Generate docs/protocol.md from the .proto files' comments.

    python docs/gen_protocol.py           rewrite docs/protocol.md
    python docs/gen_protocol.py --check   exit 1 when docs/protocol.md is stale

protoc (from grpcio-tools, the ``dev`` extra) compiles protos/ into a
FileDescriptorSet with ``--include_source_info``; the comments come from its
SourceCodeInfo (leading, trailing and detached comments per declaration), so
the reference says exactly what the .proto files say and nothing else.
Detached ``// ---- name`` divider comments become section headings.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bridge.proto import codegen  # noqa: E402  (PROTO_ROOT / PROTO_FILES: one list of protos)

OUTPUT = REPO / "docs" / "protocol.md"

# SourceCodeInfo path tags (descriptor.proto field numbers)
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE, _FILE_SYNTAX = 4, 5, 6, 12
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM, _MSG_ONEOF = 2, 3, 4, 8
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

_SCALARS = {
    1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool",
    9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64", 17: "sint32", 18: "sint64",
}
_TYPE_MESSAGE, _TYPE_ENUM = 11, 14
_LABEL_REPEATED = 3
_DIVIDER = re.compile(r"^\s*-{3,}\s*(.*?)\s*-*\s*$")


def descriptor_set():
    """Compile the protos with source info; return the FileDescriptorSet."""
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "greenlight.pb"
        args = ["protoc", f"-I{codegen.PROTO_ROOT}", f"-I{include}", "--include_source_info",
                f"--descriptor_set_out={out}", *codegen.PROTO_FILES]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class _Comments:
    def __init__(self, file_proto):
        self.by_path = {tuple(loc.path): loc for loc in file_proto.source_code_info.location}

    def text(self, path) -> str:
        """Leading + trailing comment of a declaration, as one paragraph block."""
        loc = self.by_path.get(tuple(path))
        if loc is None:
            return ""
        parts = [_dedent(c) for c in (loc.leading_comments, loc.trailing_comments) if c.strip()]
        return "\n".join(parts).strip()

    def section(self, path) -> str | None:
        """A ``// ---- name`` divider detached above a declaration, if any."""
        loc = self.by_path.get(tuple(path))
        for block in (loc.leading_detached_comments if loc else ()):
            for line in block.splitlines():
                match = _DIVIDER.match(line)
                if match and match.group(1):
                    return match.group(1)
        return None


def _dedent(comment: str) -> str:
    return "\n".join(line[1:] if line.startswith(" ") else line for line in comment.rstrip("\n").splitlines())


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _anchor(kind: str, name: str) -> str:
    return f"{kind}-{name}".lower().replace(".", "")


class _Types:
    """Fully qualified name -> (kind, short name) for links, plus map entries."""

    def __init__(self, files):
        self.kinds: dict[str, tuple[str, str]] = {}
        self.map_entries: dict[str, object] = {}
        for f in files:
            prefix = f".{f.package}" if f.package else ""
            for m in f.message_type:
                self._message(prefix, m, ())
            for e in f.enum_type:
                self.kinds[f"{prefix}.{e.name}"] = ("enum", e.name)

    def _message(self, prefix, m, parents):
        full = f"{prefix}.{m.name}"
        if m.options.map_entry:
            self.map_entries[full] = m
            return
        name = ".".join((*parents, m.name))   # nested messages read Outer.Inner
        self.kinds[full] = ("message", name)
        for n in m.nested_type:
            self._message(full, n, (*parents, m.name))
        for e in m.enum_type:
            self.kinds[f"{full}.{e.name}"] = ("enum", e.name)

    def render(self, type_name: str) -> str:
        if type_name in self.kinds:
            kind, name = self.kinds[type_name]
            return f"[`{name}`](#{_anchor(kind, name)})"
        return f"`{type_name.lstrip('.')}`"  # e.g. google.protobuf.Timestamp

    def field_type(self, field) -> str:
        if field.type == _TYPE_MESSAGE and field.type_name in self.map_entries:
            entry = self.map_entries[field.type_name]
            key, value = entry.field[0], entry.field[1]
            return f"`map<{self._plain(key)}, {self._plain(value)}>`"
        if field.type in (_TYPE_MESSAGE, _TYPE_ENUM):
            return self.render(field.type_name)
        return f"`{_SCALARS.get(field.type, str(field.type))}`"

    def _plain(self, field) -> str:
        if field.type in (_TYPE_MESSAGE, _TYPE_ENUM):
            return field.type_name.rsplit(".", 1)[-1]
        return _SCALARS.get(field.type, str(field.type))


def _label(message, field) -> str:
    if field.label == _LABEL_REPEATED and not field.type_name.endswith("Entry"):
        return "repeated"
    if field.proto3_optional:
        return "optional"
    if field.HasField("oneof_index"):
        return f"oneof `{message.oneof_decl[field.oneof_index].name}`"
    return ""


def _render_message(out, comments, types, message, path, parents=()):
    if message.options.map_entry:
        return
    name = ".".join((*parents, message.name))
    out.append(f"#### message {name}\n")
    text = comments.text(path)
    if text:
        out.append(text + "\n")
    if message.field:
        out.append("| field | number | type | label | description |")
        out.append("|---|---:|---|---|---|")
        for i, field in enumerate(message.field):
            desc = _one_line(comments.text((*path, _MSG_FIELD, i)))
            out.append(f"| `{field.name}` | {field.number} | {types.field_type(field)} | "
                       f"{_label(message, field)} | {desc} |")
        out.append("")
    else:
        out.append("_No fields._\n")
    for j, nested in enumerate(message.nested_type):
        _render_message(out, comments, types, nested, (*path, _MSG_NESTED, j), (*parents, message.name))
    for j, enum in enumerate(message.enum_type):
        _render_enum(out, comments, enum, (*path, _MSG_ENUM, j))


def _render_enum(out, comments, enum, path):
    out.append(f"#### enum {enum.name}\n")
    text = comments.text(path)
    if text:
        out.append(text + "\n")
    out.append("| value | number | description |")
    out.append("|---|---:|---|")
    for i, value in enumerate(enum.value):
        out.append(f"| `{value.name}` | {value.number} | {_one_line(comments.text((*path, _ENUM_VALUE, i)))} |")
    out.append("")


def _render_service(out, comments, types, service, path):
    out.append(f"### service {service.name}\n")
    text = comments.text(path)
    if text:
        out.append(text + "\n")
    out.append("| rpc | request | response | description |")
    out.append("|---|---|---|---|")
    for i, method in enumerate(service.method):
        req = ("stream " if method.client_streaming else "") + types.render(method.input_type)
        rsp = ("stream " if method.server_streaming else "") + types.render(method.output_type)
        out.append(f"| `{method.name}` | {req} | {rsp} | {_one_line(comments.text((*path, _SERVICE_METHOD, i)))} |")
    out.append("")


def render(fds=None) -> str:
    """The whole reference as Markdown (deterministic for a given protoc)."""
    fds = fds or descriptor_set()
    ours = [f for f in fds.file if f.name in codegen.PROTO_FILES]
    types = _Types(ours)
    packages = sorted({f.package for f in ours})
    out = [
        f"# Protocol reference: {', '.join(packages)}",
        "",
        "<!-- Generated by docs/gen_protocol.py from protos/ (the .proto comments); do not edit by hand.",
        "     Regenerate: .venv/bin/python docs/gen_protocol.py -->",
        "",
        "The wire contract between the add-ons / CLI and the bridge. Rules that apply to every call "
        "(versioning, idempotency, error codes, limits) are in DESIGN section 4; "
        "this page lists what the `.proto` files declare, with their comments.",
        "",
        "Files: " + ", ".join(f"[`{f.name}`](#{_anchor('file', f.name.rsplit('/', 1)[-1])})" for f in ours),
        "",
    ]
    for f in ours:
        comments = _Comments(f)
        out.append(f"## file {f.name.rsplit('/', 1)[-1]}\n")
        out.append(f"`protos/{f.name}`, package `{f.package}`"
                   + (f"; imports {', '.join(f'`{d}`' for d in f.dependency)}" if f.dependency else "") + ".\n")
        header = comments.text((_FILE_SYNTAX,))
        if header:
            out.append(header + "\n")
        for i, service in enumerate(f.service):
            _render_service(out, comments, types, service, (_FILE_SERVICE, i))
        # messages and enums in file order (source spans), with divider headings
        decls = [(_FILE_MESSAGE, i, m) for i, m in enumerate(f.message_type)]
        decls += [(_FILE_ENUM, i, e) for i, e in enumerate(f.enum_type)]
        decls.sort(key=lambda d: tuple(comments.by_path[(d[0], d[1])].span[:2]))
        for n, (tag, i, decl) in enumerate(decls):
            section = comments.section((tag, i)) or ("messages and enums" if n == 0 else None)
            if section:
                out.append(f"### {section[:1].upper()}{section[1:]}\n")
            if tag == _FILE_MESSAGE:
                _render_message(out, comments, types, decl, (tag, i))
            else:
                _render_enum(out, comments, decl, (tag, i))
    return "\n".join(out).rstrip("\n") + "\n"


def undocumented(fds=None) -> list[str]:
    """Fields, enum values and rpcs that carry no comment (printed as a hint)."""
    fds = fds or descriptor_set()
    missing = []
    for f in (f for f in fds.file if f.name in codegen.PROTO_FILES):
        comments = _Comments(f)
        for i, m in enumerate(f.message_type):
            for j, field in enumerate(m.field):
                if not comments.text((_FILE_MESSAGE, i, _MSG_FIELD, j)):
                    missing.append(f"{m.name}.{field.name}")
        for i, s in enumerate(f.service):
            for j, method in enumerate(s.method):
                if not comments.text((_FILE_SERVICE, i, _SERVICE_METHOD, j)):
                    missing.append(f"{s.name}.{method.name}")
    return missing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/protocol.md is out of date")
    args = parser.parse_args(argv)
    fds = descriptor_set()
    text = render(fds)
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(REPO)} is out of date with protos/; run python docs/gen_protocol.py",
                  file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    missing = undocumented(fds)
    if missing:
        print(f"note: {len(missing)} fields/rpcs have no comment in protos/, e.g. {', '.join(missing[:8])}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
