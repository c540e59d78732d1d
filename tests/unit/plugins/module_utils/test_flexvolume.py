# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Unit tests of plugins/module_utils/flexvolume.py against kubelet's FlexVolume rules
(see the reference notes, section 1: layout, dynamic discovery, call-outs, output parsing).

Drivers are small /bin/sh scripts written by the tests into pytest's tmp_path.
Run: PYTHONPATH=.cache/collections .venv/bin/python -m pytest -q tests/unit
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import threading
import time

import pytest

from ansible_collections.kubestorage.enablement.plugins.module_utils import flexvolume as fv

UID = os.getuid()
GID = os.getgid()

OK_JSON = '{"status":"Success","capabilities":{"attach":false}}'
SILENT_JSON = '{"status":"Success"}'


# --------------------------------------------------------------------------- helpers

def sha256(data):
    return hashlib.sha256(data).hexdigest()


def script(body, tag=""):
    """A /bin/sh driver; tag makes versions with the same behaviour differ in content."""
    return ("#!/bin/sh\n# version %s\n%s\n" % (tag, body)).encode()


def ok_driver(tag="", json_text=OK_JSON):
    return script("printf '%%s' '%s'\nexit 0" % json_text, tag)


def write_file(path, data, mode=0o755):
    path = os.fspath(path)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)
    return path


def new_source(tmp_path, name, data, mode=0o755):
    srcdir = tmp_path / "src"
    srcdir.mkdir(exist_ok=True)
    return write_file(srcdir / name, data, mode)


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


def snapshot(root, dir_mtimes=True):
    """Every path under root (hidden ones included) with type, mode, mtime and content.

    dir_mtimes=False ignores directory mtimes (a hidden staging file created and removed in a
    dir changes its mtime; kubelet ignores such events)."""
    out = {}
    root = os.fspath(root)
    if not os.path.exists(root):
        return None
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            st = os.lstat(full)
            out[os.path.relpath(full, root)] = ("dir", st.st_mode, st.st_mtime_ns if dir_mtimes else None)
        for f in filenames:
            full = os.path.join(dirpath, f)
            st = os.lstat(full)
            out[os.path.relpath(full, root)] = ("file", st.st_mode, st.st_mtime_ns, st.st_size,
                                                sha256(read(full)))
    st = os.stat(root)
    out["."] = ("dir", st.st_mode, st.st_mtime_ns if dir_mtimes else None)
    return out


def hidden_staging(root):
    """Leftover hidden staging/removal names anywhere under root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(os.fspath(root)):
        for n in dirnames + filenames:
            if fv.STAGING_TAG in n or fv.REMOVING_TAG in n:
                found.append(os.path.join(dirpath, n))
    return found


@pytest.fixture
def plugin(tmp_path):
    d = tmp_path / "exec"
    d.mkdir()
    return d


def installer(plugin_dir, name="vendor~drv", **kw):
    kw.setdefault("uid", UID)
    kw.setdefault("gid", GID)
    return fv.DriverInstaller(str(plugin_dir), name, **kw)


# --------------------------------------------------------------------------- names

@pytest.mark.parametrize("name, qualified, dirname, executable", [
    ("vendor~driver", "vendor/driver", "vendor~driver", "driver"),
    ("vendor/driver", "vendor/driver", "vendor~driver", "driver"),
    ("example.com~nfs", "example.com/nfs", "example.com~nfs", "nfs"),
    ("example.com/nfs", "example.com/nfs", "example.com~nfs", "nfs"),
    ("lvm", "lvm", "lvm", "lvm"),
    # the name part of a qualified name may hold upper case, '_' and '.'
    ("k8s.io~My_Drv.v2", "k8s.io/My_Drv.v2", "k8s.io~My_Drv.v2", "My_Drv.v2"),
    ("vendor~" + "a" * 63, "vendor/" + "a" * 63, "vendor~" + "a" * 63, "a" * 63),
])
def test_parse_driver_name_accepts(name, qualified, dirname, executable):
    dn = fv.parse_driver_name(name)
    assert (dn.qualified, dn.dirname, dn.executable) == (qualified, dirname, executable)


def test_driver_name_spellings_are_equal():
    assert fv.parse_driver_name("vendor/driver") == fv.parse_driver_name("vendor~driver")
    assert fv.parse_driver_name("vendor/driver") != fv.parse_driver_name("vendor~other")


@pytest.mark.parametrize("name", [
    ".hidden~x",
    "a/../b",
    "../x",
    "a/b/c",
    "a~b~c",
    "a~b/c",
    "Foo~bar",            # prefix must be a lower-case DNS subdomain
    "Foo/bar",
    "vendor~drv-",        # name part must end with an alphanumeric
    "vendor~-drv",
    "vendor~" + "a" * 64,  # name part longer than 63
    "vendor~my drv",
    "vendor~dr\\v",
    "vendor\\drv",
    "/drv",
    "drv/",
    "drv~",
    "~drv",
    "vendor_x~drv",       # '_' is not allowed in a DNS subdomain
    "vendor.~drv",
])
def test_parse_driver_name_rejects_and_names_input(name):
    with pytest.raises(fv.FlexVolumeError) as exc:
        fv.parse_driver_name(name)
    assert repr(name) in str(exc.value)
    assert exc.value.msg == str(exc.value)


@pytest.mark.parametrize("name, reason", [
    (".hidden~x", "starts with '.'"),
    ("a/../b", "contains '..'"),
    ("vendor~a..b", "contains '..'"),   # a valid qualified name, but refused: no '..' anywhere
    ("vendor~my drv", "white space"),
    ("vendor~dr\\v", "backslash"),
    ("vendor~dr\0v", "NUL"),
    ("a~b/c", "more than one vendor separator"),
    ("a~b~c", "more than one vendor separator"),
    ("a/b/c", "more than one vendor separator"),
    ("Foo~bar", "lower-case DNS-1123 subdomain"),
    ("vendor~drv-", "start and end with an alphanumeric"),
    ("/drv", "prefix part must be non-empty"),
    ("drv/", "name part must be non-empty"),
])
def test_parse_driver_name_rejection_explains_problem_and_fix(name, reason):
    with pytest.raises(fv.FlexVolumeError) as exc:
        fv.parse_driver_name(name)
    assert reason in exc.value.msg
    assert "vendor~driver" in exc.value.msg      # the fix: an example of a valid spelling


@pytest.mark.parametrize("name", ["", None, 42])
def test_parse_driver_name_rejects_empty_or_non_string(name):
    with pytest.raises(fv.FlexVolumeError) as exc:
        fv.parse_driver_name(name)
    assert "non-empty" in str(exc.value)


def test_dir_names_map_like_kubelet():
    assert fv.parse_driver_name("foo~cifs").qualified == "foo/cifs"
    assert fv.parse_driver_name("foo~cifs").executable == "cifs"
    assert fv.parse_driver_name("lvm").executable == "lvm"
    with pytest.raises(fv.FlexVolumeError):
        fv.parse_driver_name(".foo~cifs")


@pytest.mark.parametrize("value, expected_fragments", [
    ("example.com/nfs", []),
    ("nfs", []),
    ("A_b.c-9", []),
    ("/nfs", ["prefix part must be non-empty"]),
    ("nfs/", ["name part must be non-empty"]),
    ("Example.com/nfs", ["prefix part 'Example.com'", "DNS-1123 subdomain"]),
    ("x/" + "b" * 64, ["no more than 63 characters"]),
    ("x/b-", ["start and end with an alphanumeric"]),
    ("x/_b", ["start and end with an alphanumeric"]),
    ("a" * 254 + "/b", ["DNS-1123 subdomain"]),
])
def test_qualified_name_errors(value, expected_fragments):
    errors = fv.qualified_name_errors(value)
    if not expected_fragments:
        assert errors == []
    else:
        assert len(errors) == 1, errors
        for frag in expected_fragments:
            assert frag in errors[0]


def test_qualified_name_errors_reports_prefix_and_name_together():
    errors = fv.qualified_name_errors("Bad/-bad")
    assert len(errors) == 2
    assert "prefix" in errors[0] and "name part" in errors[1]


def test_qualified_name_prefix_at_253_is_accepted():
    prefix = ".".join(["a" * 63] * 4)[:253].rstrip(".")
    assert len(prefix) <= 253
    assert fv.qualified_name_errors(prefix + "/b") == []


# --------------------------------------------------------------------------- capabilities & output

def test_default_capabilities_match_kubelet():
    assert fv.merge_capabilities(None) == {"attach": True, "selinuxRelabel": True, "supportsMetrics": False,
                                           "fsGroup": True, "requiresFSResize": True}
    assert fv.merge_capabilities({}) == fv.merge_capabilities(None)


def test_driver_silent_on_attach_is_attachable():
    merged = fv.merge_capabilities({"fsGroup": False})
    assert merged["attach"] is True
    assert merged["fsGroup"] is False


def test_merge_capabilities_overrides_and_does_not_mutate_defaults():
    merged = fv.merge_capabilities({"attach": False, "supportsMetrics": True, "selinuxRelabel": False,
                                    "requiresFSResize": False})
    assert merged == {"attach": False, "selinuxRelabel": False, "supportsMetrics": True, "fsGroup": True,
                      "requiresFSResize": False}
    assert fv.DEFAULT_CAPABILITIES["attach"] is True
    assert fv.merge_capabilities(None)["supportsMetrics"] is False


def test_parse_call_output_success_without_capabilities():
    status = fv.parse_call_output("init", b'{"status":"Success"}')
    assert status["status"] == "Success"
    assert status["capabilities"] == fv.DEFAULT_CAPABILITIES


def test_parse_call_output_success_with_capabilities():
    status = fv.parse_call_output("init", b'{"status":"Success","capabilities":{"attach":false}}')
    assert status["capabilities"]["attach"] is False
    assert status["capabilities"]["selinuxRelabel"] is True
    assert status["capabilities"]["requiresFSResize"] is True


def test_parse_call_output_accepts_text_and_other_fields():
    status = fv.parse_call_output("attach", '{"status":"Success","device":"/dev/sdb"}')
    assert status["device"] == "/dev/sdb"


@pytest.mark.parametrize("output", [b"", b"   \n", ""])
def test_parse_call_output_empty(output):
    with pytest.raises(fv.DriverCallError) as exc:
        fv.parse_call_output("init", output)
    assert "init" in exc.value.msg
    assert "empty" in exc.value.msg
    assert "unexpected end of JSON input" in exc.value.msg


def test_parse_call_output_stderr_noise_before_json():
    out = b'jq: command not found\n{"status":"Success"}'
    with pytest.raises(fv.DriverCallError) as exc:
        fv.parse_call_output("init", out)
    assert "not a single JSON object" in exc.value.msg
    assert exc.value.output == out


def test_parse_call_output_trailing_garbage():
    with pytest.raises(fv.DriverCallError):
        fv.parse_call_output("init", b'{"status":"Success"}\ndone')


@pytest.mark.parametrize("output", [b'[{"status":"Success"}]', b'"Success"', b"null", b"1"])
def test_parse_call_output_json_not_an_object(output):
    with pytest.raises(fv.DriverCallError) as exc:
        fv.parse_call_output("init", output)
    assert "not an object" in exc.value.msg


def test_parse_call_output_failure_has_kubelet_wording():
    with pytest.raises(fv.DriverCallError) as exc:
        fv.parse_call_output("init", b'{"status":"Failure","message":"jq missing"}', rc=1)
    assert exc.value.msg == "init command failed, status: Failure, reason: jq missing"
    assert exc.value.rc == 1


def test_parse_call_output_failure_uses_command_name():
    with pytest.raises(fv.DriverCallError) as exc:
        fv.parse_call_output("mount", b'{"status":"Failure","message":"no"}')
    assert exc.value.msg.startswith("mount command failed, status: Failure, reason: no")


def test_parse_call_output_missing_status_is_a_failure():
    with pytest.raises(fv.DriverCallError) as exc:
        fv.parse_call_output("init", b'{"message":"hi"}')
    assert "command failed" in exc.value.msg


def test_parse_call_output_not_supported():
    with pytest.raises(fv.DriverCallError) as exc:
        fv.parse_call_output("init", b'{"status":"Not supported"}')
    assert "Not supported" in exc.value.msg
    assert "command failed" not in exc.value.msg


def test_parse_call_output_success_with_nonzero_exit_is_an_error():
    with pytest.raises(fv.DriverCallError) as exc:
        fv.parse_call_output("init", b'{"status":"Success"}', rc=1)
    assert "exited with status 1" in exc.value.msg
    assert exc.value.rc == 1


# (kubelet unmarshals into a struct of bools: a string or number there is an error. A JSON
# null for a bool, or an unknown key, is silently ignored by Go, so they are not listed here.)
@pytest.mark.parametrize("caps", ['{"attach":"false"}', '{"attach":0}', '{"supportsMetrics":"yes"}',
                                  '["attach"]', '"attach"'])
def test_parse_call_output_rejects_non_bool_capabilities(caps):
    with pytest.raises(fv.DriverCallError) as exc:
        fv.parse_call_output("init", ('{"status":"Success","capabilities":%s}' % caps).encode())
    assert "capabilities" in exc.value.msg


# --------------------------------------------------------------------------- call_driver

def test_call_driver_combines_stdout_and_stderr(tmp_path):
    drv = write_file(tmp_path / "drv", script(
        "printf 'ERR-TEXT ' >&2\nprintf '%s' '{\"status\":\"Success\"}'\nexit 0"))
    rc, output = fv.call_driver(drv, ["init"], timeout=10)
    assert rc == 0
    assert b"ERR-TEXT" in output
    assert b'{"status":"Success"}' in output
    # ... and therefore kubelet (and probe_driver) cannot parse it
    with pytest.raises(fv.DriverCallError):
        fv.probe_driver(drv, timeout=10)


def test_call_driver_passes_args_and_rc(tmp_path):
    drv = write_file(tmp_path / "drv", script('printf "%s|" "$@"\nexit 7'))
    rc, output = fv.call_driver(drv, ["mount", "/mnt/x", '{"a":1}'], timeout=10)
    assert rc == 7
    assert output == b'mount|/mnt/x|{"a":1}|'


def test_probe_driver_returns_merged_status(tmp_path):
    drv = write_file(tmp_path / "drv", ok_driver())
    status = fv.probe_driver(drv, timeout=10)
    assert status["capabilities"]["attach"] is False
    assert status["capabilities"]["fsGroup"] is True


def test_call_driver_kills_hanging_driver_and_its_children(tmp_path):
    marker = tmp_path / "child.pid"
    drv = write_file(tmp_path / "drv", script(
        "printf 'PARTIAL-OUT'\nsleep 30 &\necho $! > %s\nwait\nsleep 30" % marker))
    start = time.monotonic()
    with pytest.raises(fv.DriverCallError) as exc:
        fv.call_driver(drv, ["init"], timeout=1)
    elapsed = time.monotonic() - start
    assert elapsed < 5, elapsed
    assert "within 1 seconds" in exc.value.msg and "killed" in exc.value.msg
    assert drv in exc.value.msg
    assert exc.value.output == b"PARTIAL-OUT"
    # the background child was killed with the group
    child = int(marker.read_text().strip())
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        # a zombie still answers kill(0); check its state
        try:
            with open("/proc/%d/stat" % child) as fh:
                if fh.read().split(")")[-1].split()[0] == "Z":
                    break
        except OSError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("child sleep %d survived the timeout" % child)


def test_call_driver_not_executable(tmp_path):
    drv = write_file(tmp_path / "drv", ok_driver(), mode=0o644)
    with pytest.raises(fv.DriverCallError) as exc:
        fv.call_driver(drv, ["init"], timeout=5)
    assert "cannot run" in exc.value.msg and drv in exc.value.msg


def test_call_driver_missing_file(tmp_path):
    with pytest.raises(fv.DriverCallError) as exc:
        fv.call_driver(str(tmp_path / "nope"), ["init"], timeout=5)
    assert "nope" in exc.value.msg


# --------------------------------------------------------------------------- small helpers

def test_capability_mismatches():
    merged = fv.merge_capabilities({"attach": False})
    assert fv.capability_mismatches(merged, {"attach": False, "fsGroup": True}) == []
    assert fv.capability_mismatches(merged, None) == []
    assert fv.capability_mismatches(merged, {"attach": True}) == ["attach: required true, driver has false"]
    assert fv.capability_mismatches(merged, {"supportsMetrics": True, "attach": True}) == [
        "attach: required true, driver has false", "supportsMetrics: required true, driver has false"]
    assert fv.capability_mismatches(merged, {"unknownCap": True}) == ["unknownCap: required true, driver has unset"]


def test_missing_commands(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_file(bindir / "present", b"#!/bin/sh\n")
    write_file(bindir / "noexec", b"#!/bin/sh\n", mode=0o644)
    abs_ok = str(bindir / "present")
    abs_noexec = str(bindir / "noexec")
    abs_missing = str(bindir / "absent")
    got = fv.missing_commands(["present", "noexec", "absent", abs_ok, abs_noexec, abs_missing],
                              search_path=str(bindir))
    assert got == ["noexec", "absent", abs_noexec, abs_missing]
    assert fv.missing_commands(["present"], search_path="") == ["present"]
    assert fv.missing_commands([], search_path=str(bindir)) == []
    assert fv.missing_commands(None) == []
    # default search path is PATH plus the sbin dirs
    assert fv.missing_commands(["sh"]) == []


HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize("value, expected", [
    ("sha256:" + HEX, HEX),
    (HEX, HEX),
    (HEX.upper(), HEX),
    ("sha256:" + HEX.upper(), HEX),
    ("SHA256:" + HEX, HEX),
    (None, None),
])
def test_parse_checksum_ok(value, expected):
    assert fv.parse_checksum(value) == expected


@pytest.mark.parametrize("value", [
    "md5:" + HEX,
    "sha1:" + HEX[:40],
    "sha256:" + HEX[:63],
    "sha256:" + HEX + "0",
    HEX[:63],
    "sha256:" + HEX[:63] + "g",
    "sha256:",
    "",
])
def test_parse_checksum_rejects(value):
    with pytest.raises(fv.FlexVolumeError) as exc:
        fv.parse_checksum(value)
    assert repr(value) in exc.value.msg


def test_file_sha256(tmp_path):
    data = os.urandom(3 * 1024 + 5)
    p = write_file(tmp_path / "f", data)
    assert fv.file_sha256(p, chunk=1024) == sha256(data)


# --------------------------------------------------------------------------- installer: install

def plugin_entries(plugin):
    return sorted(os.listdir(plugin))


def test_fresh_install(tmp_path, plugin):
    data = ok_driver("v1")
    src = new_source(tmp_path, "v1", data)
    inst = installer(plugin)
    result = inst.install(src)
    exe = plugin / "vendor~drv" / "drv"
    assert result["changed"] is True
    assert result["action"] == "install"
    assert result["path"] == str(exe)
    assert result["checksum"] == sha256(data)
    assert result["previous_checksum"] is None
    assert result["backup_file"] is None
    assert result["rolled_back"] is False
    assert read(exe) == data
    assert stat.S_IMODE(os.stat(exe).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(exe.parent).st_mode) == 0o755
    assert result["init"]["status"] == "Success"
    assert result["capabilities"] == fv.merge_capabilities({"attach": False})
    assert plugin_entries(plugin) == ["vendor~drv"]
    assert os.listdir(exe.parent) == ["drv"]
    assert inst.current() == {"checksum": sha256(data), "mode": 0o755, "uid": UID, "gid": GID,
                              "size": len(data)}


@pytest.mark.parametrize("name, rel", [
    ("lvm", "lvm/lvm"),
    ("example.com/nfs", "example.com~nfs/nfs"),
])
def test_install_layout(tmp_path, plugin, name, rel):
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    result = installer(plugin, name).install(src)
    assert result["path"] == str(plugin / rel)
    assert read(plugin / rel) == read(src)
    assert plugin_entries(plugin) == [rel.split("/")[0]]


def test_install_over_empty_driver_dir(tmp_path, plugin):
    """An empty driver dir (kubelet skips it) or one holding only our stale staging file."""
    (plugin / "vendor~drv").mkdir()
    write_file(plugin / "vendor~drv" / ".drv.ks-new-99", b"partial")
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    result = installer(plugin).install(src)
    assert result["action"] == "install"
    assert result["cleaned_up"] == [str(plugin / "vendor~drv" / ".drv.ks-new-99")]
    assert os.listdir(plugin / "vendor~drv") == ["drv"]
    assert read(plugin / "vendor~drv" / "drv") == read(src)


def test_install_creates_missing_plugin_dir(tmp_path):
    pdir = tmp_path / "a" / "b" / "exec"
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    result = installer(pdir).install(src)
    assert result["action"] == "install"
    assert read(pdir / "vendor~drv" / "drv") == read(src)


def test_install_with_custom_mode(tmp_path, plugin):
    src = new_source(tmp_path, "v1", ok_driver("v1"), mode=0o644)
    installer(plugin, mode=0o700).install(src)
    assert stat.S_IMODE(os.stat(plugin / "vendor~drv" / "drv").st_mode) == 0o700


def test_reinstall_same_source_is_a_noop(tmp_path, plugin):
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    inst = installer(plugin)
    inst.install(src)
    before = snapshot(plugin)
    result = inst.install(src)
    assert result["changed"] is False
    assert result["action"] == "none"
    assert result["previous_checksum"] == result["checksum"] == sha256(read(src))
    assert result["capabilities"]["attach"] is False   # the installed version was probed
    assert snapshot(plugin) == before


def test_upgrade_keeps_backup_of_previous(tmp_path, plugin):
    v1, v2 = ok_driver("v1"), ok_driver("v2")
    inst = installer(plugin)
    inst.install(new_source(tmp_path, "v1", v1))
    exe = plugin / "vendor~drv" / "drv"
    result = inst.install(new_source(tmp_path, "v2", v2))
    assert result["changed"] is True
    assert result["action"] == "upgrade"
    assert result["previous_checksum"] == sha256(v1)
    assert result["checksum"] == sha256(v2)
    assert read(exe) == v2
    assert stat.S_IMODE(os.stat(exe).st_mode) == 0o755
    backup = result["backup_file"]
    assert backup and os.path.dirname(backup) == str(exe.parent / ".backups")
    assert os.path.basename(backup).startswith("drv.")
    assert read(backup) == v1
    assert inst.backups() == [backup]
    assert sorted(os.listdir(exe.parent)) == [".backups", "drv"]
    assert plugin_entries(plugin) == ["vendor~drv"]
    assert hidden_staging(plugin) == []


BROKEN_V3 = {
    "bad-json": ("printf 'BADJSON-v3 not json'\nexit 0", "BADJSON-v3", "not a single JSON object"),
    "stderr-noise": ("printf 'NOISE-v3: jq missing\\n' >&2\nprintf '%s' '{\"status\":\"Success\"}'\nexit 0",
                     "NOISE-v3", "not a single JSON object"),
    "exit-1": ("printf '%s' '{\"status\":\"Success\",\"message\":\"EXIT1-v3\"}'\nexit 1", "EXIT1-v3",
               "exited with status 1"),
    "failure": ("printf '%s' '{\"status\":\"Failure\",\"message\":\"FAIL-v3\"}'\nexit 1", "FAIL-v3",
                "init command failed, status: Failure, reason: FAIL-v3"),
    "not-supported": ("printf '%s' '{\"status\":\"Not supported\",\"message\":\"NOSUP-v3\"}'\nexit 1",
                      "NOSUP-v3", "Not supported"),
    "hang": ("printf 'HANG-v3'\nsleep 30 &\nwait", "HANG-v3", "did not answer within 1 seconds"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_V3))
def test_broken_upgrade_changes_nothing(tmp_path, plugin, kind):
    body, token, reason = BROKEN_V3[kind]
    v1, v2 = ok_driver("v1"), ok_driver("v2")
    inst = installer(plugin, init_timeout=1)
    inst.install(new_source(tmp_path, "v1", v1))
    inst.install(new_source(tmp_path, "v2", v2))
    before = snapshot(plugin, dir_mtimes=False)
    start = time.monotonic()
    with pytest.raises(fv.DriverCallError) as exc:
        inst.install(new_source(tmp_path, "v3", script(body, "v3")))
    assert time.monotonic() - start < 5
    msg = exc.value.msg
    assert token in msg
    assert reason in msg
    assert "Nothing was changed" in msg
    assert "vendor/drv" in msg
    assert inst.current()["checksum"] == sha256(v2)
    assert hidden_staging(plugin) == []
    # not even a backup was taken: every file is as it was
    assert snapshot(plugin, dir_mtimes=False) == before


@pytest.mark.parametrize("kind", ["bad-json", "failure", "hang"])
def test_broken_fresh_install_leaves_nothing(tmp_path, plugin, kind):
    body, token = BROKEN_V3[kind][:2]
    inst = installer(plugin, init_timeout=1)
    with pytest.raises(fv.DriverCallError) as exc:
        inst.install(new_source(tmp_path, "v3", script(body, "v3")))
    assert token in exc.value.msg and "Nothing was changed" in exc.value.msg
    assert plugin_entries(plugin) == []
    assert inst.current() is None


def staged_only_driver(plugin, tag):
    """Succeeds only when run from a hidden path under the plugin dir (the installer's staging
    names), fails at the real path: passes the pre-check, fails the post-install check."""
    prefix = os.path.normpath(str(plugin)) + "/"
    assert "/." not in prefix
    return script(
        'rel="${0#%s}"\n'
        'case "$rel" in\n'
        "  .*|*/.*) printf '%%s' '%s' ;;\n"
        "  *) printf '%%s' '{\"status\":\"Failure\",\"message\":\"REALPATH-FAIL\"}'; exit 1 ;;\n"
        "esac" % (prefix, OK_JSON), tag)


def test_post_install_verification_rolls_back_upgrade(tmp_path, plugin):
    v1 = ok_driver("v1")
    inst = installer(plugin)
    inst.install(new_source(tmp_path, "v1", v1))
    bad = staged_only_driver(plugin, "v2")
    with pytest.raises(fv.DriverCallError) as exc:
        inst.install(new_source(tmp_path, "v2", bad))
    msg = exc.value.msg
    assert "after install" in msg
    assert "REALPATH-FAIL" in msg
    assert "Rolled back" in msg
    assert "previous version" in msg and sha256(v1) in msg
    exe = plugin / "vendor~drv" / "drv"
    assert read(exe) == v1
    assert inst.current()["checksum"] == sha256(v1)
    assert stat.S_IMODE(os.stat(exe).st_mode) == 0o755
    assert hidden_staging(plugin) == []
    assert plugin_entries(plugin) == ["vendor~drv"]
    # the restored driver works where kubelet runs it
    assert fv.probe_driver(str(exe), 5)["status"] == "Success"


def test_post_install_verification_rolls_back_fresh_install(tmp_path, plugin):
    inst = installer(plugin)
    with pytest.raises(fv.DriverCallError) as exc:
        inst.install(new_source(tmp_path, "v1", staged_only_driver(plugin, "v1")))
    msg = exc.value.msg
    assert "REALPATH-FAIL" in msg
    assert "Rolled back" in msg and "removed" in msg
    assert not os.path.lexists(plugin / "vendor~drv")
    assert plugin_entries(plugin) == []


def test_staged_only_driver_really_passes_the_precheck(tmp_path, plugin):
    """Guard for the two tests above: with verify=False the driver installs, and it fails
    only at the real path (so the failure above came from the post-install check)."""
    inst = installer(plugin, verify=False)
    inst.install(new_source(tmp_path, "v1", staged_only_driver(plugin, "v1")))
    real = str(plugin / "vendor~drv" / "drv")
    with pytest.raises(fv.DriverCallError):
        fv.probe_driver(real, 5)
    hidden = str(plugin / "vendor~drv" / ".drv.copy")
    write_file(hidden, read(real))
    assert fv.probe_driver(hidden, 5)["status"] == "Success"


def test_verify_false_installs_a_broken_driver_without_probing(tmp_path, plugin):
    inst = installer(plugin, verify=False)
    result = inst.install(new_source(tmp_path, "v1", script("printf nonsense", "v1")))
    assert result["action"] == "install" and result["init"] is None
    assert inst.current() is not None


def test_keep_backups_prunes_oldest(tmp_path, plugin):
    clock = itertools.count(1_700_000_000, 61)
    inst = installer(plugin, keep_backups=2, now=lambda: next(clock))
    versions = [ok_driver("v%d" % i) for i in range(1, 6)]
    for i, data in enumerate(versions, 1):
        inst.install(new_source(tmp_path, "v%d" % i, data))
    backups = inst.backups()
    assert len(backups) == 2
    assert [read(b) for b in backups] == [versions[2], versions[3]]
    assert sorted(os.listdir(plugin / "vendor~drv" / ".backups")) == sorted(os.path.basename(b) for b in backups)
    assert read(plugin / "vendor~drv" / "drv") == versions[4]


def test_required_capabilities_mismatch_fails_naming_capability(tmp_path, plugin):
    silent = ok_driver("v1", json_text=SILENT_JSON)     # says nothing about attach -> attachable
    inst = installer(plugin, required_capabilities={"attach": False})
    with pytest.raises(fv.DriverCallError) as exc:
        inst.install(new_source(tmp_path, "v1", silent))
    assert "attach" in exc.value.msg
    assert "required false, driver has true" in exc.value.msg
    assert "Nothing was changed" in exc.value.msg
    assert plugin_entries(plugin) == []


def test_required_capabilities_match(tmp_path, plugin):
    inst = installer(plugin, required_capabilities={"attach": False, "fsGroup": True})
    result = inst.install(new_source(tmp_path, "v1", ok_driver("v1")))
    assert result["capabilities"]["attach"] is False


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o055])
def test_mode_without_owner_exec_is_rejected(plugin, mode):
    with pytest.raises(fv.FlexVolumeError) as exc:
        installer(plugin, mode=mode)
    assert oct(mode) in exc.value.msg


def test_installer_rejects_bad_name(plugin):
    with pytest.raises(fv.FlexVolumeError) as exc:
        installer(plugin, name="a~b~c")
    assert "'a~b~c'" in exc.value.msg


# --------------------------------------------------------------------------- check mode

def test_check_mode_predicts_and_touches_nothing(tmp_path, plugin):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    v1, v2 = ok_driver("v1"), ok_driver("v2")
    s1, s2 = new_source(tmp_path, "v1", v1), new_source(tmp_path, "v2", v2)
    inst = installer(plugin)

    before = snapshot(plugin)
    result = inst.install(s1, check_mode=True, scratch_dir=str(scratch))
    assert (result["action"], result["changed"]) == ("install", True)
    assert result["capabilities"]["attach"] is False
    assert snapshot(plugin) == before

    inst.install(s1)
    before = snapshot(plugin)
    result = inst.install(s1, check_mode=True, scratch_dir=str(scratch))
    assert (result["action"], result["changed"]) == ("none", False)
    assert snapshot(plugin) == before

    result = inst.install(s2, check_mode=True, scratch_dir=str(scratch))
    assert (result["action"], result["changed"]) == ("upgrade", True)
    assert result["previous_checksum"] == sha256(v1)
    assert result["checksum"] == sha256(v2)
    assert snapshot(plugin) == before
    assert read(plugin / "vendor~drv" / "drv") == v1


def test_check_mode_predicts_attributes(tmp_path, plugin):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    inst = installer(plugin)
    inst.install(src)
    os.chmod(plugin / "vendor~drv" / "drv", 0o700)
    before = snapshot(plugin)
    result = inst.install(src, check_mode=True, scratch_dir=str(scratch))
    assert (result["action"], result["changed"]) == ("attributes", True)
    assert snapshot(plugin) == before


def test_check_mode_with_missing_plugin_dir(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    pdir = tmp_path / "not-there"
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    result = installer(pdir).install(src, check_mode=True, scratch_dir=str(scratch))
    assert result["action"] == "install"
    assert not pdir.exists()


@pytest.mark.parametrize("kind", ["bad-json", "failure", "hang"])
def test_check_mode_fails_for_broken_new_version(tmp_path, plugin, kind):
    body, token, reason = BROKEN_V3[kind]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    inst = installer(plugin, init_timeout=1)
    inst.install(new_source(tmp_path, "v1", ok_driver("v1")))
    before = snapshot(plugin)
    with pytest.raises(fv.DriverCallError) as exc:
        inst.install(new_source(tmp_path, "v2", script(body, "v2")), check_mode=True, scratch_dir=str(scratch))
    assert token in exc.value.msg and reason in exc.value.msg
    assert "Nothing was changed" in exc.value.msg
    assert snapshot(plugin) == before


def test_check_mode_fails_for_missing_required_capability(tmp_path, plugin):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    inst = installer(plugin, required_capabilities={"attach": False})
    with pytest.raises(fv.DriverCallError) as exc:
        inst.install(new_source(tmp_path, "v1", ok_driver("v1", SILENT_JSON)), check_mode=True,
                     scratch_dir=str(scratch))
    assert "attach" in exc.value.msg
    assert plugin_entries(plugin) == []


# --------------------------------------------------------------------------- remove, cleanup, drift, nudge

def test_remove(tmp_path, plugin):
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    inst = installer(plugin)
    inst.install(src)
    inst.install(new_source(tmp_path, "v2", ok_driver("v2")))   # a .backups dir too

    before = snapshot(plugin)
    result = inst.remove(check_mode=True)
    assert (result["action"], result["changed"]) == ("remove", True)
    assert result["previous_checksum"] == sha256(ok_driver("v2"))
    assert snapshot(plugin) == before

    result = inst.remove()
    assert (result["action"], result["changed"]) == ("remove", True)
    assert result["previous_checksum"] == sha256(ok_driver("v2"))
    assert not os.path.lexists(plugin / "vendor~drv")
    assert plugin_entries(plugin) == []

    result = inst.remove()
    assert (result["action"], result["changed"]) == ("none", False)
    result = inst.remove(check_mode=True)
    assert (result["action"], result["changed"]) == ("none", False)


def test_remove_with_missing_plugin_dir(tmp_path):
    result = installer(tmp_path / "nope").remove()
    assert result["changed"] is False
    assert not (tmp_path / "nope").exists()


def test_remove_leaves_other_drivers(tmp_path, plugin):
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    installer(plugin, "vendor~drv").install(src)
    installer(plugin, "vendor~other").install(src)
    installer(plugin, "vendor~drv").remove()
    assert plugin_entries(plugin) == ["vendor~other"]


def test_next_install_cleans_stale_leftovers(tmp_path, plugin):
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    inst = installer(plugin)
    inst.install(src)
    stale_dir = plugin / ".vendor~drv.ks-new-123"
    stale_dir.mkdir()
    write_file(stale_dir / "drv", b"partial")
    stale_removing = plugin / ".vendor~drv.ks-removing-77"
    stale_removing.mkdir()
    stale_file = plugin / "vendor~drv" / ".drv.ks-new-123"
    write_file(stale_file, b"partial")
    # not ours: must survive
    other = plugin / ".vendor~other.ks-new-123"
    other.mkdir()
    unrelated = plugin / "vendor~drv" / ".notes"
    write_file(unrelated, b"keep")

    result = inst.install(src)
    assert result["action"] == "none"
    assert result["changed"] is True
    assert sorted(result["cleaned_up"]) == sorted([str(stale_dir), str(stale_removing), str(stale_file)])
    assert not stale_dir.exists() and not stale_removing.exists() and not stale_file.exists()
    assert other.exists() and unrelated.exists()
    assert read(plugin / "vendor~drv" / "drv") == read(src)


def test_remove_cleans_stale_leftovers(tmp_path, plugin):
    stale_dir = plugin / ".vendor~drv.ks-new-5"
    stale_dir.mkdir()
    result = installer(plugin).remove()
    assert result["cleaned_up"] == [str(stale_dir)]
    assert result["changed"] is True
    assert plugin_entries(plugin) == []


def test_attribute_drift_is_repaired(tmp_path, plugin):
    data = ok_driver("v1")
    src = new_source(tmp_path, "v1", data)
    inst = installer(plugin)
    inst.install(src)
    exe = plugin / "vendor~drv" / "drv"
    os.chmod(exe, 0o700)
    result = inst.install(src)
    assert result["action"] == "attributes"
    assert result["changed"] is True
    assert stat.S_IMODE(os.stat(exe).st_mode) == 0o755
    assert read(exe) == data
    assert inst.backups() == []
    assert result["capabilities"]["attach"] is False
    assert inst.install(src)["changed"] is False


def test_nudge_refreshes_mtime(tmp_path, plugin):
    inst = installer(plugin)
    assert inst.nudge() is False
    inst.install(new_source(tmp_path, "v1", ok_driver("v1")))
    exe = plugin / "vendor~drv" / "drv"
    os.utime(exe, (1_000_000_000, 1_000_000_000))
    assert inst.nudge(check_mode=True) is True
    assert os.stat(exe).st_mtime == 1_000_000_000
    assert inst.nudge() is True
    assert os.stat(exe).st_mtime > time.time() - 60


# --------------------------------------------------------------------------- nothing partial is ever visible

BIG = 5 * 1024 * 1024


def big_driver(tag):
    head = ok_driver(tag)
    line = ("# %s padding %s\n" % (tag, "x" * 100)).encode()
    return head + line * (BIG // len(line))


class Watcher(threading.Thread):
    """Polls the plugin dir like kubelet's prober (non-hidden paths only) and records every
    non-hidden driver dir or executable kubelet could see in an incomplete state."""

    def __init__(self, plugin_dir, executable, versions):
        super().__init__(daemon=True)
        self.plugin_dir = os.fspath(plugin_dir)
        self.executable = executable
        self.versions = {sha256(v): name for name, v in versions.items()}
        self.stop = threading.Event()
        self.problems = []
        self.seen = set()
        self.polls = 0

    def run(self):
        while not self.stop.is_set():
            self.polls += 1
            with os.scandir(self.plugin_dir) as it:
                drivers = [e for e in it if not e.name.startswith(".")]
            for d in drivers:
                if not d.is_dir(follow_symlinks=False):
                    self.problems.append(("not a dir", d.name))
                    continue
                try:
                    with os.scandir(d.path) as it:
                        files = [e for e in it if not e.name.startswith(".")]
                except FileNotFoundError:
                    self.problems.append(("driver dir vanished", d.name))
                    continue
                if self.executable not in [f.name for f in files]:
                    self.problems.append(("driver dir without executable", d.name))
                for f in files:
                    try:
                        with open(f.path, "rb") as fh:
                            st = os.fstat(fh.fileno())
                            data = fh.read()
                    except OSError as exc:
                        self.problems.append(("unreadable", f.path, str(exc)))
                        continue
                    version = self.versions.get(sha256(data))
                    if version is None:
                        self.problems.append(("partial or unknown content", f.path, len(data)))
                    elif stat.S_IMODE(st.st_mode) & 0o111 != 0o111:
                        self.problems.append(("not executable", f.path, oct(st.st_mode)))
                    else:
                        self.seen.add(version)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(10)


def test_no_partial_driver_is_ever_visible(tmp_path, plugin, monkeypatch):
    v1, v2 = big_driver("v1"), big_driver("v2")
    s1, s2 = new_source(tmp_path, "v1", v1), new_source(tmp_path, "v2", v2)
    inst = installer(plugin)
    # Widen every window between the installer's write steps (the copy is written in 1 MiB
    # os.write calls, then fsync'd) so that a non-atomic installer is reliably caught.
    real_write, real_fsync = os.write, os.fsync

    def slow_write(fd, data):
        time.sleep(0.003)
        return real_write(fd, data)

    def slow_fsync(fd):
        time.sleep(0.003)
        return real_fsync(fd)

    monkeypatch.setattr(os, "write", slow_write)
    monkeypatch.setattr(os, "fsync", slow_fsync)
    with Watcher(plugin, "drv", {"v1": v1, "v2": v2}) as w:
        time.sleep(0.05)
        inst.install(s1)
        time.sleep(0.05)
        r = inst.install(s2)
        time.sleep(0.05)
    monkeypatch.undo()
    assert r["action"] == "upgrade"
    assert w.problems == []
    assert w.polls > 5
    assert w.seen == {"v1", "v2"}


def test_watcher_detects_a_naive_copy(tmp_path, plugin):
    """Guard for the test above: writing the driver in place is caught by the watcher."""
    v1 = big_driver("v1")
    with Watcher(plugin, "drv", {"v1": v1}) as w:
        d = plugin / "vendor~drv"
        d.mkdir()
        time.sleep(0.02)
        with open(d / "drv", "wb") as fh:
            for off in range(0, len(v1), 1 << 20):
                fh.write(v1[off:off + (1 << 20)])
                fh.flush()
                time.sleep(0.02)
        os.chmod(d / "drv", 0o755)
        time.sleep(0.05)
    kinds = {p[0] for p in w.problems}
    assert "driver dir without executable" in kinds
    assert "partial or unknown content" in kinds
    assert "v1" in w.seen


# --------------------------------------------------------------------------- regressions

def test_install_into_dir_with_backups_but_no_executable(tmp_path, plugin):
    """A driver dir holding only .backups (executable deleted by hand) gets the driver back."""
    inst = installer(plugin)
    inst.install(new_source(tmp_path, "v1", ok_driver("v1")))
    inst.install(new_source(tmp_path, "v2", ok_driver("v2")))     # creates .backups
    os.unlink(plugin / "vendor~drv" / "drv")
    data = ok_driver("v3")
    result = inst.install(new_source(tmp_path, "v3", data))
    assert result["action"] == "install"
    assert read(plugin / "vendor~drv" / "drv") == data
    assert len(inst.backups()) == 1


def _versions_whose_backups_sort_backwards():
    """Two driver versions a (older) and b (newer) with sha256(b)[:12] < sha256(a)[:12]."""
    for i in itertools.count():
        a, b = ok_driver("a%d" % i), ok_driver("b%d" % i)
        if sha256(b)[:12] < sha256(a)[:12]:
            return a, b


def test_prune_keeps_newest_backup_within_one_second(tmp_path, plugin):
    """Backups are ordered by sequence, not by name: same-second upgrades prune the oldest."""
    a, b = _versions_whose_backups_sort_backwards()
    inst = installer(plugin, keep_backups=1, now=lambda: 1_700_000_000)
    inst.install(new_source(tmp_path, "a", a))
    inst.install(new_source(tmp_path, "b", b))       # backup of a
    inst.install(new_source(tmp_path, "c", ok_driver("c")))   # backup of b; prune to 1
    assert [read(x) for x in inst.backups()] == [b]


def test_install_refuses_a_source_that_changed_after_it_was_checked(tmp_path, plugin):
    """The copy is hashed as it is written; a source that no longer matches installs nothing."""
    inst = installer(plugin)
    src = new_source(tmp_path, "v1", ok_driver("v1"))
    stale = sha256(ok_driver("v0"))
    with pytest.raises(fv.FlexVolumeError, match="changed while it was being installed"):
        inst.install(src, source_checksum=stale)
    assert plugin_entries(plugin) == []
    assert hidden_staging(plugin) == []


def test_unknown_capability_keys_are_ignored_like_kubelet():
    status = fv.parse_call_output("init", b'{"status":"Success","capabilities":{"vendorNote":"x","attach":false}}')
    assert status["capabilities"]["attach"] is False
    with pytest.raises(fv.DriverCallError, match="attach"):
        fv.parse_call_output("init", b'{"status":"Success","capabilities":{"attach":"no"}}')


def _install_many(plugin_dir, source, rounds, errors):
    try:
        inst = installer(plugin_dir, keep_backups=2)
        for _round in range(rounds):
            inst.install(source)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        errors.put(repr(exc))


def test_concurrent_installs_of_the_same_driver_never_corrupt_it(tmp_path, plugin):
    """Two processes installing different versions at once: the lock keeps every step whole."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    versions = {tag: ok_driver(tag) for tag in ("A", "B")}
    sources = {tag: new_source(tmp_path, tag, data) for tag, data in versions.items()}
    procs = [ctx.Process(target=_install_many, args=(str(plugin), sources[tag], 15, errors)) for tag in versions]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert all(proc.exitcode == 0 for proc in procs)
    inst = installer(plugin)
    assert read(plugin / "vendor~drv" / "drv") in versions.values()
    assert hidden_staging(plugin) == []
    backups = inst.backups()
    assert 1 <= len(backups) <= 2
    assert all(read(b) in versions.values() for b in backups)


def test_install_without_source_uses_the_node_copy_or_asks_for_a_transfer(tmp_path, plugin):
    """source=None (the action plugin's first pass): no-op when the node has the file, else transfer_required."""
    inst = installer(plugin)
    v1, v2 = ok_driver("v1"), ok_driver("v2")
    first = inst.install(None, sha256(v1))
    assert first["transfer_required"] and not first["changed"] and plugin_entries(plugin) == []
    inst.install(new_source(tmp_path, "v1", v1))
    before = snapshot(plugin)
    same = inst.install(None, sha256(v1))
    assert not same["transfer_required"] and not same["changed"] and same["action"] == "none"
    assert same["capabilities"]["attach"] is False  # the installed copy was verified
    other = inst.install(None, sha256(v2))
    assert other["transfer_required"] and other["previous_checksum"] == sha256(v1)
    checked = inst.install(None, sha256(v2), check_mode=True, scratch_dir=str(tmp_path))
    assert checked["transfer_required"] and not checked["changed"]
    assert snapshot(plugin) == before
    with pytest.raises(fv.FlexVolumeError):
        inst.install(None)
