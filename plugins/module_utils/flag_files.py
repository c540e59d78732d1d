# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# Reading and editing the files that hold kubelet and control-plane flags, as text.
#
# Plain Python (no Ansible imports): every function takes the file's current text (None when
# the file does not exist) and returns the new text; the modules do the I/O, the atomic write
# and the backup. `path` arguments are used only in messages.
#
# Backends (each has read() -> ordered [(name, value)] and update() -> new text):
# - env files (systemd EnvironmentFile= syntax): /etc/default/kubelet, /etc/sysconfig/kubelet,
#   kubeadm's kubeadm-flags.env, kubespray's /etc/kubernetes/kubelet.env;
# - systemd drop-ins: Environment="VAR=..." lines in [Service] (10-kubeadm.conf);
# - kubeadm static pod manifests: spec.containers[i].command;
# - k3s / RKE2 config.yaml lists (kubelet-arg: [name=value, ...]);
# - KubeletConfiguration YAML (top-level fields and featureGates).
#
# Edits are minimal: untouched bytes stay as they were, and update() with changes that are
# already in place returns the input text unchanged. Each edit is re-parsed and checked
# before it is returned, so a layout the editor cannot handle raises FlagFileError instead
# of writing something unexpected.
#
# How a variable's value becomes kubelet arguments: systemd expands an unquoted $VAR in
# ExecStart= by splitting the value at white space, with no further quote removal (and sh
# does the same with an unquoted $VAR), so a variable's value is split at white space here
# too. Quotes in the file itself (VAR="...", Environment="VAR=...") follow systemd's rules.

import copy
import difflib
import io
import json
import re

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is a requirement of the collection
    yaml = None
    HAS_YAML = False

try:
    from ruamel.yaml import YAML as RuamelYAML
    HAS_RUAMEL = True
except ImportError:
    RuamelYAML = None
    HAS_RUAMEL = False

KUBELET_CONFIG_API_VERSIONS = ("kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1")
DEFAULT_HOST_PATH_TYPE = "DirectoryOrCreate"

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_ASSIGN_RE = re.compile(r"(export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*")
_UNIT_ASSIGN_RE = re.compile(r"[ \t]*([A-Za-z0-9_.-]+)[ \t]*=[ \t]*")
_FLAG_TOKEN_RE = re.compile(r"^(-{1,2})([A-Za-z][^=]*)(?:=(.*))?$", re.S)
_SAFE_TOKEN_RE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_DELETE = object()  # sentinel: an op or gate marked for removal


class FlagFileError(Exception):
    """A file or a request this module cannot handle.

    .msg names the path, the line and the fix; .path and .line (1-based, or None) are the
    parts; .reason is the problem alone.
    """

    def __init__(self, reason, path=None, line=None, fix=None):
        self.reason = reason
        self.path = path
        self.line = line
        self.fix = fix
        where = path if path else "<text>"
        if line is not None:
            where = "%s, line %d" % (where, line)
        msg = "%s: %s" % (where, reason)
        if fix:
            msg = "%s; fix: %s" % (msg, fix)
        self.msg = msg
        super().__init__(msg)


class _CannotPatch(Exception):
    """The in-place YAML editor met a layout it does not handle."""


def _need_yaml(path):
    if not HAS_YAML:
        raise FlagFileError("PyYAML is not installed", path, None,
                            "install PyYAML (python3-yaml) on the node")


# ---------------------------------------------------------------------------------------
# Flags and args


def normalize_flag_name(name, path=None):
    """The flag name without leading dashes. Raises FlagFileError for an empty name or one
    with '=' or white space."""
    if not isinstance(name, str):
        raise FlagFileError("flag name %r is not a string" % (name,), path, None,
                            'give the flag name as a string, e.g. "volume-plugin-dir"')
    bare = name.lstrip("-")
    if not bare or "=" in bare or any(c.isspace() for c in bare):
        raise FlagFileError("invalid flag name %r" % (name,), path, None,
                            'give the flag name alone, without "=value" or spaces, '
                            'e.g. "volume-plugin-dir"')
    return bare


def _flag_value(name, value, path):
    """A change's value as the string written in the file (None: remove the flag)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise FlagFileError("value of flag %r is a %s, not a string" % (name, type(value).__name__),
                        path, None, "give flag values as strings")


class _Word(object):
    """A shell-like word: its unquoted value and where it is in the text."""

    def __init__(self, value, start, end, line):
        self.value = value
        self.start = start
        self.end = end
        self.line = line


def _scan_words(text, start, end, path, line, escaped_newline_is_space=False):
    """Split text[start:end] into shell-like words with their raw spans.

    Single quotes are literal; in double quotes a backslash escapes " \\ $ ` and newline;
    outside quotes a backslash escapes any character. A backslash-newline joins lines (sh,
    EnvironmentFile) or is a space (systemd unit files, escaped_newline_is_space).
    """
    words = []
    cur = None
    wstart = wline = 0
    i = start
    while i < end:
        c = text[i]
        if c in " \t\r\n":
            if cur is not None:
                words.append(_Word("".join(cur), wstart, i, wline))
                cur = None
            if c == "\n":
                line += 1
            i += 1
            continue
        if c == "\\" and i + 1 < end and text[i + 1] == "\n":
            line += 1
            i += 2
            if escaped_newline_is_space and cur is not None:
                words.append(_Word("".join(cur), wstart, i - 2, wline))
                cur = None
            continue
        if cur is None:
            cur = []
            wstart = i
            wline = line
        if c == "\\":
            if i + 1 < end:
                cur.append(text[i + 1])
                i += 2
            else:
                cur.append(c)
                i += 1
        elif c == "'":
            j = text.find("'", i + 1, end)
            if j < 0:
                raise FlagFileError("unterminated single quote", path, line,
                                    "close the quote with a matching '")
            cur.append(text[i + 1:j])
            line += text.count("\n", i, j)
            i = j + 1
        elif c == '"':
            qline = line
            j = i + 1
            while True:
                if j >= end:
                    raise FlagFileError("unterminated double quote", path, qline,
                                        'close the quote with a matching "')
                d = text[j]
                if d == '"':
                    break
                if d == "\\" and j + 1 < end:
                    e = text[j + 1]
                    if e == "\n":
                        line += 1
                        if escaped_newline_is_space:
                            cur.append(" ")
                    elif e in '"\\$`':
                        cur.append(e)
                    else:
                        cur.append("\\" + e)
                    j += 2
                    continue
                if d == "\n":
                    line += 1
                cur.append(d)
                j += 1
            i = j + 1
        else:
            cur.append(c)
            i += 1
    if cur is not None:
        words.append(_Word("".join(cur), wstart, i, wline))
    return words


def split_args(text, path=None):
    """Shell-like split of an args string: white space separates words; single quotes,
    double quotes and backslash escapes are honoured as sh and systemd treat them."""
    if text is None:
        return []
    return [w.value for w in _scan_words(text, 0, len(text), path, 1)]


def _quote_token(token):
    if token and _SAFE_TOKEN_RE.match(token):
        return token
    if "'" not in token and "\\" not in token:
        return "'%s'" % token
    return '"%s"' % re.sub(r'(["\\$`])', r"\\\1", token)


def _check_tokens(tokens, path):
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
        raise FlagFileError("args must be a list of strings, not %r" % (tokens,), path, None,
                            "split the args first (split_args)")


def join_args(tokens, path=None):
    """The inverse of split_args: tokens joined by spaces, quoting only those that need it."""
    _check_tokens(tokens, path)
    return " ".join(_quote_token(t) for t in tokens)


def args_to_flags(tokens, path=None):
    """Ordered [(name, value)] of args: '--name=value' -> (name, value), a bare '--name' ->
    (name, None), anything else (and everything after '--') -> (None, token).

    A flag's value is never taken from the next token: '--name value' is (name, None) and
    (None, 'value')."""
    _check_tokens(tokens, path)
    pairs = []
    positional_only = False
    for tok in tokens:
        if positional_only:
            pairs.append((None, tok))
            continue
        if tok == "--":
            positional_only = True
            pairs.append((None, tok))
            continue
        match = _FLAG_TOKEN_RE.match(tok)
        if match and not any(c.isspace() for c in match.group(2)):
            pairs.append((match.group(2), match.group(3)))
        else:
            pairs.append((None, tok))
    return pairs


def _flag_token(name, value):
    return "--%s" % name if value is None else "--%s=%s" % (name, value)


def flags_to_args(pairs, path=None):
    """The inverse of args_to_flags: (name, value) -> '--name=value', (name, None) ->
    '--name', (None, token) -> token."""
    out = []
    for name, value in pairs:
        if name is None:
            out.append(value)
        else:
            out.append(_flag_token(normalize_flag_name(name, path), value))
    return out


def _plan(pairs, changes, path):
    """How changes apply to pairs: (ops, appended, changed_names).

    ops[i] is None (keep pair i), _DELETE, or ("set", value). A flag that exists keeps the
    position of its first occurrence, later duplicates of a changed flag are deleted, new
    flags are appended, None removes every occurrence.
    """
    wanted = {}
    for name, value in (changes or {}).items():
        bare = normalize_flag_name(name, path)
        wanted[bare] = _flag_value(bare, value, path)
    ops = [None] * len(pairs)
    changed = []
    for name, want in wanted.items():
        idxs = [i for i, pair in enumerate(pairs) if pair[0] == name]
        if want is None:
            for i in idxs:
                ops[i] = _DELETE
            if idxs:
                changed.append(name)
            continue
        if not idxs or all(pairs[i][1] == want for i in idxs):
            continue  # missing (appended below) or already in place, duplicates included
        first = idxs[0]
        if pairs[first][1] != want:
            ops[first] = ("set", want)
        for i in idxs[1:]:
            ops[i] = _DELETE
        changed.append(name)
    present = set(p[0] for p in pairs if p[0] is not None)
    appended = [(name, want) for name, want in wanted.items()
                if want is not None and name not in present]
    changed.extend(name for name, dummy in appended)
    return ops, appended, changed


def set_flags(pairs, changes, path=None):
    """Apply changes ({name: value string, or None to remove}) to pairs.

    Returns (new_pairs, changed_names). An existing flag keeps its position, a new one is
    appended, duplicates of a changed flag collapse into the first occurrence."""
    ops, appended, changed = _plan(pairs, changes, path)
    out = []
    for pair, op in zip(pairs, ops):
        if op is None:
            out.append(pair)
        elif op != _DELETE:
            out.append((pair[0], op[1]))
    out.extend(appended)
    return out, changed


def _apply_plan_to_tokens(tokens, pairs, ops, appended):
    out = []
    for tok, pair, op in zip(tokens, pairs, ops):
        if op is None:
            out.append(tok)
        elif op != _DELETE:
            out.append(_flag_token(pair[0], op[1]))
    out.extend(_flag_token(n, v) for n, v in appended)
    return out


def _go_bool(text):
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    return None


def merge_feature_gates(existing_value, changes, path=None):
    """Merge changes ({gate: bool, or None to remove}) into an 'A=true,B=false' string.

    Gates not in changes are never touched; existing order is kept, new gates are appended.
    Returns the new string (existing_value itself when nothing changes), or None when no gate
    is left. Raises FlagFileError for an item that is not Gate=bool."""
    items = []  # [raw, name, value]
    if existing_value is not None and existing_value.strip():
        for raw in existing_value.split(","):
            item = raw.strip()
            if not item:
                items.append([raw, None, None])
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            parsed = _go_bool(value.strip())
            if not sep or not name or parsed is None:
                raise FlagFileError("feature gate item %r is not Name=true or Name=false" % item,
                                    path, None, "correct the feature-gates value by hand")
            items.append([raw, name, parsed])
    changed = False
    for gate, want in (changes or {}).items():
        if not isinstance(gate, str) or not gate or re.search(r"[=,\s]", gate):
            raise FlagFileError("invalid feature gate name %r" % (gate,), path, None,
                                "give the gate name alone, e.g. CSIMigration")
        if isinstance(want, str) and _go_bool(want) is not None:
            want = _go_bool(want)
        if want is not None and not isinstance(want, bool):
            raise FlagFileError("feature gate %s must be set to true, false or None (remove), "
                                "not %r" % (gate, want), path, None, "pass a boolean")
        idxs = [i for i, it in enumerate(items) if it[1] == gate]
        if want is None:
            if idxs:
                changed = True
                for i in idxs:
                    items[i][1] = _DELETE
            continue
        if not idxs:
            items.append(["%s=%s" % (gate, "true" if want else "false"), gate, want])
            changed = True
            continue
        if all(items[i][2] is want for i in idxs):
            continue
        changed = True
        first = items[idxs[0]]
        if first[2] is not want:
            lead = first[0][:len(first[0]) - len(first[0].lstrip())]
            first[0] = "%s%s=%s" % (lead, gate, "true" if want else "false")
            first[2] = want
        for i in idxs[1:]:
            items[i][1] = _DELETE
    if not changed:
        return existing_value
    result = ",".join(it[0] for it in items if it[1] not in (_DELETE, None))
    return result if result.strip() else None


def _check_env_tokens(tokens, path):
    for tok in tokens:
        if not tok or any(c.isspace() for c in tok):
            raise FlagFileError("argument %r is empty or contains white space, which systemd "
                                "and sh split when they expand the variable" % tok, path, None,
                                "use a value without spaces")


# ---------------------------------------------------------------------------------------
# Env files: /etc/default/kubelet, /etc/sysconfig/kubelet, kubeadm-flags.env, kubelet.env


class _Assignment(object):
    """One VAR=value in an env file, decoded as systemd's EnvironmentFile= does."""

    def __init__(self, key, line, start, value_start):
        self.key = key
        self.line = line
        self.start = start
        self.value_start = value_start
        self.value_end = value_start
        self.chars = []  # (char, raw start, raw end, quote, segment)

    def tokens(self):
        """The value split at white space: [(token, raw start, raw end, quote or None, seg)]."""
        toks = []
        cur = None
        for ch, rstart, rend, quote, seg in self.chars:
            if ch.isspace():
                if cur is not None:
                    toks.append(cur)
                    cur = None
                continue
            if cur is None:
                cur = [[ch], rstart, rend, quote, seg]
            else:
                cur[0].append(ch)
                cur[2] = rend
                if cur[4] != seg:
                    cur[3] = None
        if cur is not None:
            toks.append(cur)
        return [("".join(t[0]), t[1], t[2], t[3], t[4]) for t in toks]

    def value(self):
        return "".join(c[0] for c in self.chars)


def _parse_env_file(text, path):
    """Every assignment of an env file, in order. Raises FlagFileError with the line for an
    unterminated quote or a line that is not an assignment, a comment or blank."""
    assigns = []
    n = len(text)
    i = 0
    line = 1
    seg = 0
    while i < n:
        j = i
        while j < n and text[j] in " \t\r":
            j += 1
        if j >= n:
            break
        if text[j] == "\n":
            i = j + 1
            line += 1
            continue
        if text[j] in "#;":
            k = text.find("\n", j)
            if k < 0:
                break
            i = k + 1
            line += 1
            continue
        match = _ENV_ASSIGN_RE.match(text, j)
        if not match:
            k = text.find("\n", j)
            snippet = text[j:n if k < 0 else k]
            raise FlagFileError("line is not a VAR=value assignment, a comment or blank: %r"
                                % snippet[:80], path, line,
                                'fix the line or comment it out with "#"')
        assign = _Assignment(match.group(2), line, j, match.end())
        k = match.end()
        state = "pre"
        while k < n:
            c = text[k]
            if c == "\n":
                break
            if c == "\\":
                if k + 1 < n and text[k + 1] == "\n":
                    k += 2
                    line += 1
                    continue
                if k + 1 < n:
                    if state != "plain":
                        seg += 1
                        state = "plain"
                    assign.chars.append((text[k + 1], k, k + 2, "", seg))
                    k += 2
                else:
                    k += 1
                continue
            if state == "pre" and c in " \t\r":
                k += 1
                continue
            if state == "pre" and c in "\"'":
                seg += 1
                qline = line
                k += 1
                while True:
                    if k >= n:
                        raise FlagFileError("unterminated %s quote in the value of %s"
                                            % ("double" if c == '"' else "single", assign.key),
                                            path, qline, "close the quote with a matching %s" % c)
                    d = text[k]
                    if d == c:
                        k += 1
                        break
                    if c == '"' and d == "\\" and k + 1 < n:
                        e = text[k + 1]
                        if e == "\n":
                            line += 1
                        elif e in '"\\`$':
                            assign.chars.append((e, k, k + 2, c, seg))
                        else:
                            assign.chars.append(("\\", k, k + 1, c, seg))
                            k += 1
                            continue
                        k += 2
                        continue
                    if d == "\n":
                        line += 1
                    assign.chars.append((d, k, k + 1, c, seg))
                    k += 1
                continue
            if state != "plain":
                seg += 1
                state = "plain"
            assign.chars.append((c, k, k + 1, "", seg))
            k += 1
        assign.value_end = k
        assigns.append(assign)
        if k >= n:
            break
        i = k + 1
        line += 1
    return assigns


def _find_assignment(assigns, variable):
    found = None
    for assign in assigns:
        if assign.key == variable:
            found = assign
    return found


def _check_variable(variable, path):
    if not isinstance(variable, str) or not _ENV_NAME_RE.match(variable):
        raise FlagFileError("invalid variable name %r" % (variable,), path, None,
                            "give a shell variable name such as KUBELET_EXTRA_ARGS")


def env_file_read(text, variable, path):
    """Ordered [(name, value)] of the args in variable (its last assignment wins, as in
    systemd); [] when the file or the variable is missing."""
    _check_variable(variable, path)
    assign = _find_assignment(_parse_env_file(text or "", path), variable)
    if assign is None:
        return []
    return args_to_flags([t[0] for t in assign.tokens()])


def _encode_env_token(token, quote, path):
    if quote == '"':
        return re.sub(r'(["\\$`])', r"\\\1", token)
    if quote == "'":
        if "'" in token:
            raise FlagFileError("argument %r contains a single quote but the value is "
                                "single-quoted" % token, path, None,
                                "switch the variable to double quotes by hand")
        return token
    return re.sub(r"([^A-Za-z0-9_@%+=:,./-])", r"\\\1", token)


def _encode_env_value(tokens, style, path):
    body = " ".join(_encode_env_token(t, style, path) for t in tokens)
    return "%s%s%s" % (style, body, style)


def _env_edits(text, assign, tokens, new_tokens, ops, path):
    """Edits (start, end, replacement) turning assign's tokens into new_tokens: replaced
    args are rewritten in their own quoting, removed args go with the separator before them,
    new args follow the last kept one with the separator the file already uses."""
    raw_value = text[assign.value_start:assign.value_end]
    style = raw_value[:1] if raw_value[:1] in "\"'" else ""
    kept = [i for i, op in enumerate(ops) if op != _DELETE]
    if not style and len(new_tokens) > 1:
        # Unquoted white space is fine for systemd but splits the value when sh sources the
        # file (/etc/default and /etc/sysconfig files often are): quote the whole value.
        return [(assign.value_start, assign.value_end, _encode_env_value(new_tokens, '"', path))]
    if not kept:
        return [(assign.value_start, assign.value_end, _encode_env_value(new_tokens, style, path))]

    def quote_of(tok):
        if tok[3] is None:
            raise FlagFileError("cannot edit argument %r of %s: it mixes quoting styles"
                                % (tok[0], assign.key), path, assign.line,
                                "quote the whole value in one style")
        return tok[3]

    edits = []
    i = 0
    while i < len(tokens):
        if ops[i] != _DELETE:
            i += 1
            continue
        j = i
        while j + 1 < len(tokens) and ops[j + 1] == _DELETE:
            j += 1
        if i > 0 and len(set(t[4] for t in tokens[i - 1:j + 1])) == 1:
            edits.append((tokens[i - 1][2], tokens[j][2], ""))
        elif j + 1 < len(tokens) and len(set(t[4] for t in tokens[i:j + 2])) == 1:
            edits.append((tokens[i][1], tokens[j + 1][1], ""))
        else:
            edits.extend((t[1], t[2], "") for t in tokens[i:j + 1])
        i = j + 1
    out_iter = iter(new_tokens)
    for tok, op in zip(tokens, ops):
        if op == _DELETE:
            continue
        new_tok = next(out_iter)
        if op is not None and new_tok != tok[0]:
            edits.append((tok[1], tok[2], _encode_env_token(new_tok, quote_of(tok), path)))
    rest = list(out_iter)
    if rest:
        last = tokens[kept[-1]]
        sep = " "
        if len(tokens) > 1:
            before, final = tokens[-2], tokens[-1]
            gap = text[before[2]:final[1]]
            if before[4] == final[4] and re.match(r"^[ \t]*\\?\n[ \t]*$", gap):
                sep = gap
        quote = quote_of(last)
        body = "".join(sep + _encode_env_token(t, quote, path) for t in rest)
        edits.append((last[2], last[2], body))
    return edits


def _apply_edits(text, edits):
    out = []
    pos = 0
    for start, end, repl in sorted(edits, key=lambda e: (e[0], 0 if e[0] == e[1] else 1)):
        if start < pos:
            raise _CannotPatch("overlapping edits")
        out.append(text[pos:start])
        out.append(repl)
        pos = max(pos, end)
    out.append(text[pos:])
    return "".join(out)


def env_file_update(text, variable, changes, path):
    """The env file text with changes applied to variable's args.

    Only the variable's changed args are rewritten: other lines, comments, line
    continuations, the quoting style and a leading 'export' stay. A missing variable is
    appended as VAR="...". Returns text itself when nothing changes."""
    _check_variable(variable, path)
    base = text or ""
    assigns = _parse_env_file(base, path)
    assign = _find_assignment(assigns, variable)
    tokens = assign.tokens() if assign is not None else []
    words = [t[0] for t in tokens]
    pairs = args_to_flags(words)
    ops, appended, changed = _plan(pairs, changes, path)
    if not changed:
        return text
    new_tokens = _apply_plan_to_tokens(words, pairs, ops, appended)
    _check_env_tokens(new_tokens, path)
    if assign is None:
        prefix = base if not base or base.endswith("\n") else base + "\n"
        new_text = "%s%s=%s\n" % (prefix, variable, _encode_env_value(new_tokens, '"', path))
    else:
        try:
            new_text = _apply_edits(base, _env_edits(base, assign, tokens, new_tokens, ops, path))
        except _CannotPatch:
            new_text = None
    check = _find_assignment(_parse_env_file(new_text, path), variable) if new_text is not None else None
    if check is None or [t[0] for t in check.tokens()] != new_tokens:
        raise FlagFileError("cannot edit %s in place without changing its meaning" % variable,
                            path, assign.line if assign else None,
                            "simplify the assignment (one quoted value) and retry")
    return new_text


# ---------------------------------------------------------------------------------------
# systemd drop-ins: Environment="VAR=..." in [Service]


class _UnitEntry(object):
    def __init__(self, kind, name, line, start, end, section, value_start=None):
        self.kind = kind  # "section" or "assign"
        self.name = name
        self.line = line
        self.start = start
        self.end = end  # index of the newline ending the (logical) line, or len(text)
        self.section = section
        self.value_start = value_start


def _parse_unit(text, path):
    entries = []
    n = len(text)
    i = 0
    line = 1
    section = None
    while i < n:
        j = text.find("\n", i)
        eol = n if j < 0 else j
        stripped = text[i:eol].strip()
        if not stripped or stripped[0] in "#;":
            i = eol + 1
            line += 1
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]") or len(stripped) < 3:
                raise FlagFileError("malformed section header %r" % stripped, path, line,
                                    "write the header as [Service]")
            section = stripped[1:-1]
            entries.append(_UnitEntry("section", section, line, i, eol, section))
            i = eol + 1
            line += 1
            continue
        match = _UNIT_ASSIGN_RE.match(text, i)
        if not match or match.end() > eol:
            raise FlagFileError("line is not Key=Value, a [Section] header, a comment or blank: %r"
                                % stripped[:80], path, line,
                                'fix the line or comment it out with "#"')
        if section is None:
            raise FlagFileError("assignment %s= before any [Section] header" % match.group(1),
                                path, line, "put it under [Service]")
        start_line = line
        while text[i:eol].rstrip(" \t\r").endswith("\\") and eol < n:
            j = text.find("\n", eol + 1)
            eol = n if j < 0 else j
            line += 1
        entries.append(_UnitEntry("assign", match.group(1), start_line, i, eol, section,
                                  match.end()))
        i = eol + 1
        line += 1
    return entries


def _dropin_env(text, path):
    """Effective Environment= assignments of [Service]: {var: (value, word, entry)} and the
    [Service] entries (headers and assignments) in order."""
    effective = {}
    service = []
    for entry in _parse_unit(text, path):
        if entry.section != "Service":
            continue
        service.append(entry)
        if entry.kind != "assign" or entry.name != "Environment":
            continue
        words = _scan_words(text, entry.value_start, entry.end, path, entry.line,
                            escaped_newline_is_space=True)
        if not words:
            effective.clear()  # an empty Environment= resets the list
            continue
        for word in words:
            var, sep, value = word.value.partition("=")
            if not sep or not _ENV_NAME_RE.match(var):
                raise FlagFileError("Environment= word %r is not VAR=value" % word.value, path,
                                    word.line, 'write it as Environment="VAR=value"')
            effective[var] = (value.replace("%%", "%"), word, entry)
    return effective, service


def dropin_read(text, variable, path):
    """Ordered [(name, value)] of the args in variable's effective Environment= assignment
    in [Service]; [] when there is none."""
    _check_variable(variable, path)
    effective, dummy = _dropin_env(text or "", path)
    if variable not in effective:
        return []
    return args_to_flags(effective[variable][0].split())


def _dropin_word(variable, tokens, raw):
    body = " ".join(tokens).replace("%", "%%")
    assignment = "%s=%s" % (variable, body)
    dq_body = r'(?:[^"\\]|\\.)*'
    if raw.startswith("'") and re.match(r"^'[^']*'$", raw) and "'" not in assignment \
            and "\\" not in assignment:
        return "'%s'" % assignment
    if re.match(r"^%s=%s$" % (re.escape(variable), '"' + dq_body + '"'), raw, re.S):
        return '%s="%s"' % (variable, re.sub(r'(["\\])', r"\\\1", body))
    if re.match(r"^%s='[^']*'$" % re.escape(variable), raw) and "'" not in body \
            and "\\" not in body:
        return "%s='%s'" % (variable, body)
    if not re.search(r"[\"'\\]", raw) and _SAFE_TOKEN_RE.match(assignment):
        return assignment
    return '"%s"' % re.sub(r'(["\\])', r"\\\1", assignment)


def dropin_update(text, variable, changes, path):
    """The drop-in text with changes applied to variable's args; only that assignment's
    word changes. A missing Environment= line (and [Service] section) is created."""
    _check_variable(variable, path)
    base = text or ""
    effective, service = _dropin_env(base, path)
    current = effective.get(variable)
    words = current[0].split() if current else []
    pairs = args_to_flags(words)
    ops, appended, changed = _plan(pairs, changes, path)
    if not changed:
        return text
    new_tokens = _apply_plan_to_tokens(words, pairs, ops, appended)
    _check_env_tokens(new_tokens, path)
    if current is not None:
        word = current[1]
        raw = base[word.start:word.end]
        new_text = base[:word.start] + _dropin_word(variable, new_tokens, raw) + base[word.end:]
        line = word.line
    else:
        new_line = "Environment=%s" % _dropin_word(variable, new_tokens, '"')
        line = None
        if service:
            # after the last Environment= line of the last [Service] section, else at its end
            last_header = max(i for i, e in enumerate(service) if e.kind == "section")
            envs = [e for e in service[last_header:] if e.kind == "assign" and e.name == "Environment"]
            anchor = envs[-1] if envs else service[-1]
            at = anchor.end
            if at >= len(base):
                new_text = base + "\n" + new_line + "\n"
            else:
                new_text = base[:at + 1] + new_line + "\n" + base[at + 1:]
        else:
            prefix = base
            if prefix and not prefix.endswith("\n"):
                prefix += "\n"
            if prefix.strip():
                prefix += "\n"
            new_text = "%s[Service]\n%s\n" % (prefix, new_line)
    check, dummy = _dropin_env(new_text, path)
    if variable not in check or check[variable][0].split() != new_tokens:
        raise FlagFileError("cannot edit Environment=%s in place" % variable, path, line,
                            'write the assignment as Environment="%s=..."' % variable)
    return new_text


# ---------------------------------------------------------------------------------------
# YAML: loading, kubeadm (Go yaml) layout, and a minimal in-place editor

if HAS_YAML:
    class _GoDumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
        """PyYAML's SafeDumper writing quoted scalars with double quotes, as Go yaml does."""

        def choose_scalar_style(self):
            style = super().choose_scalar_style()
            if style == "'" and self.event.style != "'":
                return '"'
            return style

    class _IndentedDumper(_GoDumper):  # pylint: disable=too-many-ancestors
        """_GoDumper with sequences indented under their key ("key:\n  - item")."""

        def increase_indent(self, flow=False, indentless=False):
            return super().increase_indent(flow, False)
else:  # pragma: no cover
    _GoDumper = _IndentedDumper = None


def _go_dump(data, indented=False):
    """data in kubeadm's layout (Go yaml via sigs.k8s.io/yaml): keys in data's order, block
    style, sequences not indented under their key (unless indented), no line wrapping,
    double quotes."""
    return yaml.dump(data, Dumper=_IndentedDumper if indented else _GoDumper, sort_keys=False,
                     default_flow_style=False, width=float("inf"), allow_unicode=True)


def _yaml_error(exc, path, what):
    """FlagFileError for a PyYAML error. The line is where the problem was found, except for
    a token the scanner could not finish (an unterminated quote): there it is the token's
    start, which is where the mistake is."""
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = problem_mark or context_mark
    if isinstance(exc, yaml.scanner.ScannerError) and context_mark is not None:
        mark = context_mark
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if context:
        where = context_mark.line + 1 if context_mark is not None else None
        if where is not None and where != line:
            context = "%s (line %d)" % (context, where)
        problem = "%s: %s" % (context, problem)
    if problem_mark is not None and problem_mark.line + 1 != line:
        problem = "%s (line %d)" % (problem, problem_mark.line + 1)
    return FlagFileError("invalid YAML in %s: %s" % (what, problem), path, line,
                         "fix the YAML syntax at that line")


def _load_yaml(text, path, what="the file"):
    """(root node, data) of a single-document YAML text; (None, None) when it is empty."""
    _need_yaml(path)
    if text is None or not text.strip():
        return None, None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path, what) from None
    finally:
        loader.dispose()
    return node, data


def _construct(node):
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _same(a, b):
    """Deep equality that tells True from 1 and 1 from 1.0 (key order ignored)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and _same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _canon(value):
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def _key_line(node, keys):
    """1-based line of the deepest of keys (mapping keys or list indexes) found under node."""
    line = 1
    for key in keys:
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            for knode, vnode in node.value:
                if isinstance(knode, yaml.ScalarNode) and knode.value == key:
                    line = knode.start_mark.line + 1
                    node = vnode
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _set_key(mapping, key, value, keep_sorted=True):
    """mapping[key] = value; a new key goes in sorted position when the keys are sorted
    (kubeadm's layout), else at the end."""
    if key in mapping:
        mapping[key] = value
        return
    keys = list(mapping)
    if keep_sorted and len(keys) > 1 and all(isinstance(k, str) for k in keys) \
            and keys == sorted(keys):
        pos = len([k for k in keys if k < key])
        if hasattr(mapping, "insert"):  # ruamel.yaml CommentedMap
            mapping.insert(pos, key, value)
            return
        items = list(mapping.items())
        items.insert(pos, (key, value))
        mapping.clear()
        mapping.update(items)
        return
    mapping[key] = value


def _is_empty_scalar(node):
    return isinstance(node, yaml.ScalarNode) and node.value == "" and not node.style


def _is_block(node):
    return isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style


def _render_scalar(value, style=None):
    """A scalar as one line of YAML, in style (' or ") when value is a string."""
    if isinstance(value, str) and style in ("'", '"'):
        node = yaml.ScalarNode("tag:yaml.org,2002:str", value, style=style)
        out = yaml.serialize(node, Dumper=_GoDumper, width=float("inf"), allow_unicode=True)
    else:
        out = yaml.dump(value, Dumper=_GoDumper, width=float("inf"), allow_unicode=True,
                        default_flow_style=True)
    if out.endswith("\n...\n"):
        out = out[:-5]
    out = out.rstrip("\n")
    if "\n" in out:
        raise _CannotPatch("multi-line scalar")
    return out


class _Patcher(object):
    """Turns a YAML text whose data is old into one whose data is new by editing only the
    changed nodes (positions from PyYAML's composer), so comments and layout survive."""

    def __init__(self, text, root):
        self.text = text
        self.edits = []
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.indented = self.indented_sequences(root)

    def indented_sequences(self, node):
        """Whether the file's first block sequence under a key is indented under it."""
        if isinstance(node, yaml.MappingNode):
            for knode, vnode in node.value:
                if isinstance(vnode, yaml.SequenceNode) and not vnode.flow_style and vnode.value:
                    try:
                        dash = self.item_dash(vnode.value[0])
                    except _CannotPatch:
                        return False
                    return dash - self.line_start(dash) > knode.start_mark.column
                found = self.indented_sequences(vnode)
                if found is not None:
                    return found
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                found = self.indented_sequences(item)
                if found is not None:
                    return found
        return None

    def dump(self, data):
        return _go_dump(data, indented=bool(self.indented))

    def edit(self, start, end, repl):
        self.edits.append((start, end, repl))

    def result(self):
        out = []
        pos = 0
        order = sorted(range(len(self.edits)),
                       key=lambda i: (self.edits[i][0], 0 if self.edits[i][0] == self.edits[i][1] else 1, i))
        for i in order:
            start, end, repl = self.edits[i]
            if start < pos:
                raise _CannotPatch("overlapping edits")
            out.append(self.text[pos:start])
            out.append(repl)
            pos = max(pos, end)
        out.append(self.text[pos:])
        return "".join(out)

    # positions
    def line_start(self, idx):
        return self.text.rfind("\n", 0, idx) + 1

    def line_end(self, idx):
        nl = self.text.find("\n", idx)
        return len(self.text) if nl < 0 else nl + 1

    def own_line(self, idx):
        return self.text[self.line_start(idx):idx].strip() == ""

    def node_end(self, node):
        if isinstance(node, yaml.MappingNode) and not node.flow_style:
            knode, vnode = node.value[-1]
            return self.entry_end(knode, vnode)
        if isinstance(node, yaml.SequenceNode) and not node.flow_style:
            return self.item_end(node.value[-1])
        end = node.end_mark.index
        k = end - 1 if end > 0 and self.text[end - 1] == "\n" else end
        return self.line_end(k)

    def entry_end(self, knode, vnode):
        if _is_empty_scalar(vnode):
            return self.line_end(knode.end_mark.index)
        return self.node_end(vnode)

    def item_end(self, item):
        if _is_empty_scalar(item):
            raise _CannotPatch("empty sequence item")
        return self.node_end(item)

    def item_dash(self, item):
        idx = item.start_mark.index - 1
        while idx >= 0 and self.text[idx] in " \t\r\n":
            idx -= 1
        if idx < 0 or self.text[idx] != "-":
            raise _CannotPatch("sequence item without a dash")
        return idx

    def block(self, text, col):
        lines = text.splitlines(True)
        out = "".join((" " * col + ln) if ln.strip() else ln for ln in lines)
        if self.newline != "\n":
            out = out.replace("\n", self.newline)
        return out

    def insert_at_end(self, at, rendered):
        if at > 0 and self.text[at - 1] != "\n":
            rendered = self.newline + rendered
        self.edit(at, at, rendered)

    # mappings
    def diff_mapping(self, node, old, new, root=False):
        entries = []
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise _CannotPatch("complex mapping key")
            entries.append((knode, vnode, _construct(knode)))
        if len(set(_canon(e[2]) for e in entries)) != len(entries):
            raise _CannotPatch("duplicate keys")
        col = entries[0][0].start_mark.column
        by_key = {}
        for pos, (knode, vnode, key) in enumerate(entries):
            by_key[key] = pos
            if key not in new:
                self.delete_entry(entries, pos)
            else:
                self.diff_value(knode, vnode, key, old[key], new[key])
        new_keys = list(new)
        for pos, key in enumerate(new_keys):
            if key in old:
                continue
            rendered = self.block(self.dump({key: new[key]}), col)
            anchor = None
            for later in new_keys[pos + 1:]:
                if later in old and later in by_key:
                    anchor = entries[by_key[later]][0]
                    break
            if anchor is not None and self.own_line(anchor.start_mark.index):
                at = self.line_start(anchor.start_mark.index)
                self.edit(at, at, rendered)
            elif root:
                self.insert_at_end(len(self.text), rendered)
            else:
                self.insert_at_end(self.entry_end(entries[-1][0], entries[-1][1]), rendered)

    def delete_entry(self, entries, pos):
        knode, vnode = entries[pos][0], entries[pos][1]
        start = knode.start_mark.index
        end = self.entry_end(knode, vnode)
        if self.own_line(start):
            self.edit(self.line_start(start), end, "")
        elif pos + 1 < len(entries):
            # first key on a "- " line: the next key moves up onto the dash line
            self.edit(start, entries[pos + 1][0].start_mark.index, "")
        else:
            raise _CannotPatch("cannot empty a mapping that starts on a dash line")

    def diff_value(self, knode, vnode, key, old, new):
        if _same(old, new):
            return
        if isinstance(vnode, yaml.MappingNode) and not vnode.flow_style \
                and isinstance(new, dict) and new:
            self.diff_mapping(vnode, old, new)
        elif isinstance(vnode, yaml.SequenceNode) and not vnode.flow_style \
                and isinstance(new, list) and new:
            self.diff_sequence(vnode, old, new)
        elif _is_block(vnode) or _is_empty_scalar(vnode) or (isinstance(new, (dict, list)) and new):
            start = knode.start_mark.index
            if not self.own_line(start):
                raise _CannotPatch("cannot rewrite a key that starts on a dash line")
            rendered = self.block(self.dump({key: new}), knode.start_mark.column)
            self.edit(self.line_start(start), self.entry_end(knode, vnode), rendered)
        else:
            self.replace_inline(vnode, new)

    def replace_inline(self, node, new):
        if isinstance(new, dict):
            repl = "{}"
        elif isinstance(new, list):
            repl = "[]"
        else:
            style = node.style if isinstance(node, yaml.ScalarNode) else None
            repl = _render_scalar(new, style if isinstance(new, str) else None)
        self.edit(node.start_mark.index, node.end_mark.index, repl)

    # sequences
    def render_items(self, values, col, style):
        parts = []
        for value in values:
            if isinstance(value, (dict, list)) and value:
                parts.append(self.dump([value]))
            else:
                if isinstance(value, dict):
                    scalar = "{}"
                elif isinstance(value, list):
                    scalar = "[]"
                else:
                    scalar = _render_scalar(value, style if isinstance(value, str) else None)
                parts.append("- %s\n" % scalar)
        return self.block("".join(parts), col)

    def diff_sequence(self, node, old, new):
        items = node.value
        first_dash = self.item_dash(items[0])
        col = first_dash - self.line_start(first_dash)
        matcher = difflib.SequenceMatcher(None, [_canon(x) for x in old], [_canon(x) for x in new],
                                          autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            common = min(i2 - i1, j2 - j1) if tag == "replace" else 0
            for off in range(common):
                self.diff_item(items[i1 + off], old[i1 + off], new[j1 + off], col)
            for idx in range(i1 + common, i2):
                dash = self.item_dash(items[idx])
                if not self.own_line(dash):
                    raise _CannotPatch("nested sequence item")
                self.edit(self.line_start(dash), self.item_end(items[idx]), "")
            if j1 + common < j2:
                hint = items[max(i2 - 1, 0)]
                style = hint.style if isinstance(hint, yaml.ScalarNode) else None
                rendered = self.render_items(new[j1 + common:j2], col, style)
                if i2 < len(items):
                    dash = self.item_dash(items[i2])
                    if not self.own_line(dash):
                        raise _CannotPatch("nested sequence item")
                    at = self.line_start(dash)
                    self.edit(at, at, rendered)
                else:
                    self.insert_at_end(self.item_end(items[-1]), rendered)

    def diff_item(self, item, old, new, col):
        if _same(old, new):
            return
        if isinstance(item, yaml.MappingNode) and not item.flow_style and isinstance(new, dict) and new:
            self.diff_mapping(item, old, new)
        elif isinstance(item, yaml.SequenceNode) and not item.flow_style and isinstance(new, list) and new:
            self.diff_sequence(item, old, new)
        elif _is_block(item) or _is_empty_scalar(item) or (isinstance(new, (dict, list)) and new):
            dash = self.item_dash(item)
            if not self.own_line(dash):
                raise _CannotPatch("nested sequence item")
            style = item.style if isinstance(item, yaml.ScalarNode) else None
            self.edit(self.line_start(dash), self.item_end(item), self.render_items([new], col, style))
        else:
            self.replace_inline(item, new)


def _patch_yaml(text, node, old, new):
    """text edited in place so that it loads as new; raises _CannotPatch."""
    if not isinstance(node, yaml.MappingNode) or node.flow_style or not isinstance(new, dict) \
            or not isinstance(old, dict):
        raise _CannotPatch("the document is not a block mapping")
    patcher = _Patcher(text, node)
    patcher.diff_mapping(node, old, new, root=True)
    out = patcher.result()
    try:
        check = yaml.safe_load(out)
    except yaml.YAMLError:
        raise _CannotPatch("the edited text does not parse") from None
    if not _same(check, new):
        raise _CannotPatch("the edited text does not load as intended")
    return out


def _go_layout(text, old):
    """True when text is exactly what _go_dump writes for its data (kubeadm's files)."""
    try:
        return _go_dump(old) == text
    except yaml.YAMLError:
        return False


def _emit_yaml(text, node, old, new):
    """(new text, how): kubeadm-layout files are re-dumped, anything else is edited in
    place. Raises _CannotPatch."""
    if _go_layout(text, old):
        out = _go_dump(new)
        if _same(yaml.safe_load(out), new):
            return out, "go-dump"
    return _patch_yaml(text, node, old, new), "in-place"


# ---------------------------------------------------------------------------------------
# Static pod manifests


def _pod_container(node, data, container, path):
    if not isinstance(data, dict) or data.get("kind") != "Pod":
        kind = data.get("kind") if isinstance(data, dict) else None
        raise FlagFileError("not a Pod manifest (kind: %s)" % kind, path,
                            _key_line(node, ["kind"]) if node is not None else None,
                            "point path at a static pod manifest such as "
                            "/etc/kubernetes/manifests/kube-controller-manager.yaml")
    spec = data.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers \
            or not all(isinstance(c, dict) for c in containers):
        raise FlagFileError("the Pod has no spec.containers list", path,
                            _key_line(node, ["spec", "containers"]),
                            "point path at a static pod manifest with containers")
    names = [c.get("name") for c in containers]
    if container is None:
        if len(containers) == 1:
            return 0
        raise FlagFileError("the Pod has %d containers (%s)" % (len(names), ", ".join(map(str, names))),
                            path, _key_line(node, ["spec", "containers"]),
                            "name the container to edit")
    if container in names:
        return names.index(container)
    raise FlagFileError("the Pod has no container named %r (containers: %s)"
                        % (container, ", ".join(map(str, names))), path,
                        _key_line(node, ["spec", "containers"]),
                        "name one of the containers listed")


def _pod_command(node, data, index, path):
    command = data["spec"]["containers"][index].get("command")
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise FlagFileError("container %s has no command list of strings"
                            % data["spec"]["containers"][index].get("name"), path,
                            _key_line(node, ["spec", "containers", index, "command"]),
                            "point path at a kubeadm manifest whose flags are in command")
    return command


def _load_pod(text, path):
    if text is None or not text.strip():
        raise FlagFileError("the static pod manifest is missing or empty", path, None,
                            "point path at an existing manifest in /etc/kubernetes/manifests")
    return _load_yaml(text, path, "the static pod manifest")


def static_pod_read(text, container, path):
    """Ordered [(name, value)] of the items of container's command after the command."""
    node, data = _load_pod(text, path)
    index = _pod_container(node, data, container, path)
    return args_to_flags(_pod_command(node, data, index, path)[1:])


def _check_mount(mount, path):
    if not isinstance(mount, dict):
        raise FlagFileError("host_path_mounts item %r is not a dict" % (mount,), path, None,
                            "give {name, path, type, read_only}")
    name = mount.get("name")
    host = mount.get("path")
    htype = mount.get("type") or DEFAULT_HOST_PATH_TYPE
    read_only = mount.get("read_only", False)
    if not isinstance(name, str) or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name):
        raise FlagFileError("host_path_mounts name %r is not a DNS label" % (name,), path, None,
                            "use a lower-case name such as flexvolume-dir")
    if not isinstance(host, str) or not host.startswith("/"):
        raise FlagFileError("host_path_mounts path %r is not absolute" % (host,), path, None,
                            "give an absolute path")
    if not isinstance(read_only, bool):
        raise FlagFileError("host_path_mounts read_only must be a boolean", path, None,
                            "use true or false")
    return name, host, htype, read_only


def _ensure_mounts(pod, container, mounts, path):
    spec = pod["spec"]
    volumes = spec.get("volumes")
    if volumes is None:
        volumes = []
    if not isinstance(volumes, list):
        raise FlagFileError("spec.volumes is not a list", path, None, "fix the manifest")
    vmounts = container.get("volumeMounts")
    if vmounts is None:
        vmounts = []
    if not isinstance(vmounts, list):
        raise FlagFileError("volumeMounts is not a list", path, None, "fix the manifest")
    for mount in mounts:
        name, host, htype, read_only = _check_mount(mount, path)
        vol = next((v for v in volumes if isinstance(v, dict) and v.get("name") == name), None)
        if vol is None:
            vol = next((v for v in volumes if isinstance(v, dict) and isinstance(v.get("hostPath"), dict)
                        and v["hostPath"].get("path") == host), None)
        if vol is None:
            vol = {"hostPath": {"path": host, "type": htype}, "name": name}
            volumes.append(vol)
        else:
            hostpath = vol.get("hostPath")
            if not isinstance(hostpath, dict):
                raise FlagFileError("volume %s is not a hostPath volume" % vol.get("name"), path, None,
                                    "rename the volume in host_path_mounts")
            if hostpath.get("path") != host:
                hostpath["path"] = host
            if hostpath.get("type") != htype:
                _set_key(hostpath, "type", htype)
        vname = vol["name"]
        clash = [m for m in vmounts if isinstance(m, dict) and m.get("mountPath") == host
                 and m.get("name") != vname]
        if clash:
            raise FlagFileError("container %s already mounts volume %s at %s"
                                % (container.get("name"), clash[0].get("name"), host), path, None,
                                "remove that mount or use its volume name %s" % clash[0].get("name"))
        vmount = next((m for m in vmounts if isinstance(m, dict) and m.get("name") == vname), None)
        if vmount is None:
            vmount = {"mountPath": host, "name": vname}
            if read_only:
                vmount["readOnly"] = True
            vmounts.append(vmount)
        else:
            if vmount.get("mountPath") != host:
                vmount["mountPath"] = host
            if read_only and vmount.get("readOnly") is not True:
                _set_key(vmount, "readOnly", True)
            if not read_only and vmount.get("readOnly") is True:
                del vmount["readOnly"]
    if volumes and "volumes" not in spec:
        _set_key(spec, "volumes", volumes)
    if vmounts and "volumeMounts" not in container:
        _set_key(container, "volumeMounts", vmounts)


def static_pod_update(text, container, changes, path, host_path_mounts=None):
    """The manifest with changes applied to container's command flags (in place: order
    kept, new flags appended, None removes) and host_path_mounts ensured as hostPath
    volumes and volumeMounts. kubeadm-layout files change only on the changed lines; other
    files are edited in place."""
    node, data = _load_pod(text, path)
    index = _pod_container(node, data, container, path)
    command = _pod_command(node, data, index, path)
    pairs = args_to_flags(command[1:])
    ops, appended, dummy = _plan(pairs, changes, path)
    new = copy.deepcopy(data)
    target = new["spec"]["containers"][index]
    target["command"][:] = [command[0]] + _apply_plan_to_tokens(command[1:], pairs, ops, appended)
    if host_path_mounts:
        _ensure_mounts(new, target, host_path_mounts, path)
    if _same(data, new):
        return text
    try:
        out, dummy = _emit_yaml(text, node, data, new)
    except _CannotPatch as exc:
        raise FlagFileError("cannot edit the manifest without rewriting it (%s)" % exc, path, None,
                            "remove YAML anchors/flow collections around the edited parts") from None
    return out


# ---------------------------------------------------------------------------------------
# k3s / RKE2 config.yaml lists (kubelet-arg, kube-controller-manager-arg, ...)


def _config_items(node, data, key, path):
    if data is None:
        return []
    if not isinstance(data, dict):
        raise FlagFileError("the top level is not a mapping", path, 1,
                            "the file must be a YAML mapping of option: value")
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise FlagFileError("%s is not a list" % key, path, _key_line(node, [key]),
                            '%s: must be a list such as ["name=value"]' % key)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise FlagFileError("%s item %r is not a string" % (key, item), path,
                                _key_line(node, [key, i]), 'quote the item: "name=value"')
    return value


def _config_item_pair(item):
    name, sep, value = item.strip().lstrip("-").partition("=")
    return name, (value if sep else None)


def config_list_read(text, key, path):
    """Ordered [(name, value)] of key's 'name=value' items; [] when missing."""
    node, data = _load_yaml(text, path)
    return [_config_item_pair(i) for i in _config_items(node, data, key, path)]


def config_list_update(text, key, changes, path):
    """The config text with changes applied to key's items, edited in place so comments and
    other keys survive (a flow list may become a block list). A missing key is appended."""
    node, data = _load_yaml(text, path)
    items = _config_items(node, data, key, path)
    pairs = [_config_item_pair(i) for i in items]
    ops, appended, changed = _plan(pairs, changes, path)
    if not changed:
        return text
    new_items = []
    for item, pair, op in zip(items, pairs, ops):
        if op is None:
            new_items.append(item)
        elif op != _DELETE:
            new_items.append("%s=%s" % (pair[0], op[1]))
    new_items.extend("%s=%s" % pair for pair in appended)
    if data is None:
        base = text or ""
        if base and not base.endswith("\n"):
            base += "\n"
        return base + _go_dump({key: new_items})
    new = dict(data)
    new[key] = new_items
    try:
        return _patch_yaml(text, node, data, new)
    except _CannotPatch as exc:
        raise FlagFileError("cannot edit %s in place (%s)" % (key, exc), path, _key_line(node, [key]),
                            "write %s as a plain block list of quoted items" % key) from None


# ---------------------------------------------------------------------------------------
# KubeletConfiguration


def _kubelet_config(text, path):
    if text is None or not text.strip():
        raise FlagFileError("the kubelet config file is missing or empty", path, None,
                            "point path at the file kubelet's --config names")
    node, data = _load_yaml(text, path, "the kubelet config")
    if not isinstance(data, dict) or data.get("kind") != "KubeletConfiguration" \
            or data.get("apiVersion") not in KUBELET_CONFIG_API_VERSIONS:
        kind = data.get("kind") if isinstance(data, dict) else None
        api = data.get("apiVersion") if isinstance(data, dict) else None
        raise FlagFileError("not a KubeletConfiguration (kind: %s, apiVersion: %s)" % (kind, api),
                            path, _key_line(node, ["kind" if kind != "KubeletConfiguration" else "apiVersion"]),
                            "point path at a file with kind: KubeletConfiguration and "
                            "apiVersion: %s" % KUBELET_CONFIG_API_VERSIONS[0])
    return node, data


def kubelet_config_read(text, path):
    """The KubeletConfiguration as a dict (refuses anything else)."""
    return _kubelet_config(text, path)[1]


def _apply_kubelet_changes(config, changes, path):
    for field, value in changes.items():
        if not isinstance(field, str) or not field or field in ("kind", "apiVersion"):
            raise FlagFileError("cannot set field %r" % (field,), path, None,
                                "name a KubeletConfiguration field such as volumePluginDir")
        if field == "featureGates" and value is not None:
            if not isinstance(value, dict):
                raise FlagFileError("featureGates must be a dict of gate: true/false/None", path,
                                    None, "pass e.g. {'CSIMigration': True}")
            gates = config.get("featureGates")
            if gates is None:
                gates = {}
            if not isinstance(gates, dict):
                raise FlagFileError("featureGates in the file is not a mapping", path, None,
                                    "fix featureGates by hand")
            for gate, want in value.items():
                if want is not None and not isinstance(want, bool):
                    raise FlagFileError("feature gate %s must be true, false or None" % gate, path,
                                        None, "pass a boolean")
                if want is None:
                    gates.pop(gate, None)
                elif gates.get(gate) is not want or gate not in gates:
                    gates[gate] = want
            if gates:
                if "featureGates" not in config:
                    _set_key(config, "featureGates", gates)
            elif "featureGates" in config:
                del config["featureGates"]
        elif value is None:
            config.pop(field, None)
        elif not _same(config.get(field), value) or field not in config:
            _set_key(config, field, copy.deepcopy(value))


def _has_comments(text):
    return re.search(r"(^|[ \t])#", text, re.M) is not None


def _guess_indents(text, node):
    """(mapping indent, dash offset of sequences under a key) of the first of each found."""
    mapping = offset = None
    todo = [node]
    while todo and (mapping is None or offset is None):
        cur = todo.pop(0)
        if isinstance(cur, yaml.MappingNode) and not cur.flow_style:
            for knode, vnode in cur.value:
                if isinstance(vnode, yaml.MappingNode) and not vnode.flow_style and mapping is None:
                    mapping = vnode.value[0][0].start_mark.column - knode.start_mark.column
                if isinstance(vnode, yaml.SequenceNode) and not vnode.flow_style and offset is None:
                    first = vnode.value[0].start_mark
                    dash = text.rfind("-", 0, first.index)
                    offset = max(dash - (text.rfind("\n", 0, dash) + 1) - knode.start_mark.column, 0)
                todo.append(vnode)
        elif isinstance(cur, yaml.SequenceNode):
            todo.extend(cur.value)
    return (mapping if mapping and mapping > 0 else 2), (offset or 0)


def _ruamel_update(text, node, changes, path, expected):
    yml = RuamelYAML(typ="rt")
    yml.preserve_quotes = True
    yml.width = 4096
    mapping, offset = _guess_indents(text, node)
    yml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    data = yml.load(text)
    _apply_kubelet_changes(data, changes, path)
    buf = io.StringIO()
    yml.dump(data, buf)
    out = buf.getvalue()
    if not _same(yaml.safe_load(out), expected):
        raise _CannotPatch("ruamel.yaml output does not load as intended")
    return out


def kubelet_config_update(text, changes, path):
    """(new text, notes): the KubeletConfiguration with changes applied.

    changes maps top-level fields to values (None removes the field); featureGates is a dict
    merged gate by gate (None removes a gate). kubeadm-layout files and files the in-place
    editor handles keep every other byte; otherwise ruamel.yaml round-trip is used when
    installed, else PyYAML, and notes say what was lost."""
    node, data = _kubelet_config(text, path)
    if not isinstance(changes, dict):
        raise FlagFileError("changes must be a dict", path, None, "pass {field: value}")
    new = copy.deepcopy(data)
    _apply_kubelet_changes(new, changes, path)
    if _same(data, new) and list(data) == list(new):
        return text, []
    try:
        out, dummy = _emit_yaml(text, node, data, new)
        return out, []
    except _CannotPatch as exc:
        reason = str(exc)
    notes = ["could not edit in place (%s)" % reason]
    if HAS_RUAMEL:
        try:
            out = _ruamel_update(text, node, changes, path, new)
            notes.append("rewritten with ruamel.yaml round-trip: comments kept, "
                         "indentation and quoting may differ")
            return out, notes
        except FlagFileError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            notes.append("ruamel.yaml round-trip failed (%s)" % exc)
    out = _go_dump(new)
    if _has_comments(text):
        notes.append("comments were not preserved (%s)" % (
            "ruamel.yaml not installed" if not HAS_RUAMEL else "ruamel.yaml round-trip failed"))
    notes.append("the file was rewritten by PyYAML in kubeadm's layout")
    return out, notes
