# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""FlexVolume drivers as kubelet sees them: names, call-outs, output parsing, and an
installer that kubelet's prober never sees half-done.

Plain Python (no Ansible imports) so unit tests call it directly; the modules only map
parameters and results.

Kubelet rules followed here (pkg/volume/flexvolume):
- a driver lives at <plugin_dir>/<vendor>~<driver>/<driver>; a dir without "~" maps to
  <dir>/<dir>; the driver name (vendor/driver) must be a qualified name;
- the prober ignores every path whose basename starts with ".";
- a call's stdout and stderr are combined and parsed as JSON over the default capabilities;
  status must be "Success"; a non-zero exit is an error even with a Success body.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

DEFAULT_PLUGIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"

# kubelet's defaultCapabilities(): what a driver has unless its init output says otherwise.
DEFAULT_CAPABILITIES = {
    "attach": True,
    "selinuxRelabel": True,
    "supportsMetrics": False,
    "fsGroup": True,
    "requiresFSResize": True,
}

STATUS_SUCCESS = "Success"
STATUS_NOT_SUPPORTED = "Not supported"

BACKUP_DIR = ".backups"          # hidden: kubelet's prober ignores it
STAGING_TAG = ".ks-new-"         # hidden staging names: .<name>.ks-new-<pid>
REMOVING_TAG = ".ks-removing-"   # hidden name of a driver dir being removed

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_RE = re.compile(r"^%s(\.%s)*$" % (_DNS_LABEL, _DNS_LABEL))
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


class FlexVolumeError(Exception):
    """A failure whose message names the input, the problem and the fix."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class DriverCallError(FlexVolumeError):
    """A driver call kubelet would treat as failed; output is what the driver printed."""

    def __init__(self, msg, output=b"", rc=None, rolled_back=False):
        super().__init__(msg, output=output, rc=rc)
        self.output = output
        self.rc = rc
        self.rolled_back = rolled_back


def qualified_name_errors(value):
    """Problems kubelet's IsQualifiedName would report for value ([] when valid)."""
    errors = []
    prefix, sep, name = value.rpartition("/")
    if sep:
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix):
            errors.append("prefix part %r must be a lower-case DNS-1123 subdomain "
                          "(letters a-z, digits, '-' and '.')" % prefix)
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part %r must be no more than 63 characters" % name)
    elif not _QUALIFIED_NAME_RE.match(name):
        errors.append("name part %r must consist of alphanumerics, '-', '_' or '.', and "
                      "start and end with an alphanumeric" % name)
    return errors


class DriverName(object):
    """A FlexVolume driver name in its three spellings.

    qualified: vendor/driver (pod spec flexVolume.driver), dirname: vendor~driver (the dir in
    the plugin dir), executable: driver (the file in that dir).
    """

    def __init__(self, qualified, dirname, executable):
        self.qualified = qualified
        self.dirname = dirname
        self.executable = executable

    def __repr__(self):
        return "DriverName(%r)" % self.qualified

    def __eq__(self, other):
        return isinstance(other, DriverName) and self.dirname == other.dirname

    def __hash__(self):
        return hash(self.dirname)


def parse_driver_name(name):
    """Parse 'vendor~driver', 'vendor/driver' or 'driver' into a DriverName.

    Raises FlexVolumeError for anything kubelet would reject or that could escape the plugin
    dir (path separators beyond the one '/', '..', leading '.', '~' and '/' mixed).
    """
    if not isinstance(name, str) or not name:
        raise FlexVolumeError("name: must be a non-empty string such as 'vendor~driver' or 'vendor/driver'")
    problems = []
    if name.startswith("."):
        problems.append("starts with '.' (kubelet ignores hidden names)")
    if ".." in name:
        problems.append("contains '..'")
    if "\\" in name or "\0" in name or any(c.isspace() for c in name):
        problems.append("contains a backslash, NUL or white space")
    if name.count("/") + name.count("~") > 1:
        problems.append("has more than one vendor separator ('/' or '~')")
    if problems:
        raise FlexVolumeError("name %r: %s; use 'vendor~driver' or 'vendor/driver', e.g. 'example.com~nfs'"
                              % (name, "; ".join(problems)))
    qualified = name.replace("~", "/")
    errors = qualified_name_errors(qualified)
    if errors:
        raise FlexVolumeError("name %r is not a valid Kubernetes qualified name: %s; use "
                              "'vendor~driver' or 'vendor/driver', e.g. 'example.com~nfs'"
                              % (name, "; ".join(errors)))
    vendor, sep, driver = qualified.partition("/")
    if sep:
        return DriverName(qualified, "%s~%s" % (vendor, driver), driver)
    return DriverName(qualified, qualified, qualified)


def merge_capabilities(capabilities):
    """kubelet's merge: the driver's capabilities over DEFAULT_CAPABILITIES."""
    merged = dict(DEFAULT_CAPABILITIES)
    if capabilities:
        merged.update(capabilities)
    return merged


def parse_call_output(command, output, rc=0):
    """Parse a driver's combined output the way kubelet does.

    Returns the parsed status dict, with 'capabilities' merged over the defaults.
    Raises DriverCallError with kubelet's wording when kubelet would fail the call.
    """
    text = output.decode("utf-8", errors="replace") if isinstance(output, bytes) else output
    if not text.strip():
        raise DriverCallError("%s: driver output is empty (kubelet: unexpected end of JSON input)" % command,
                              output, rc)
    try:
        import json
        status = json.loads(text)
    except ValueError as exc:
        raise DriverCallError("%s: driver output is not a single JSON object (%s); anything the driver prints "
                              "to stderr is mixed into it" % (command, exc), output, rc)
    if not isinstance(status, dict):
        raise DriverCallError("%s: driver output is JSON but not an object" % command, output, rc)
    caps = status.get("capabilities")
    if caps is not None and not isinstance(caps, dict):
        raise DriverCallError("%s: 'capabilities' in the driver output must be an object" % command, output, rc)
    if caps is not None:
        # kubelet decodes only the capabilities it knows and ignores other keys.
        bad = sorted(k for k, v in caps.items() if k in DEFAULT_CAPABILITIES and not isinstance(v, bool))
        if bad:
            raise DriverCallError("%s: capabilities %s must be true or false" % (command, ", ".join(bad)),
                                  output, rc)
    result_status = status.get("status")
    if result_status == STATUS_NOT_SUPPORTED:
        raise DriverCallError("%s: driver answered 'Not supported'" % command, output, rc)
    if result_status != STATUS_SUCCESS:
        raise DriverCallError("%s command failed, status: %s, reason: %s"
                              % (command, result_status, status.get("message", "")), output, rc)
    if rc:
        raise DriverCallError("%s: driver exited with status %s although it printed Success" % (command, rc),
                              output, rc)
    status["capabilities"] = merge_capabilities(caps)
    return status


def call_driver(executable, args, timeout):
    """Run a driver call as kubelet does (stdout and stderr combined). Returns (rc, output).

    A call that outlives timeout seconds is killed with its whole process group and raises
    DriverCallError.
    """
    # Not AnsibleModule.run_command: it has no timeout, cannot kill a hung driver's process group,
    # and this code runs without an AnsibleModule in unit tests.
    try:
        proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
            [executable] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    except OSError as exc:
        raise DriverCallError("%s: cannot run %s: %s" % (args[0] if args else "call", executable, exc.strerror or exc))
    try:
        output = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        output = proc.communicate()[0]
        raise DriverCallError("%s: %s did not answer within %s seconds and was killed (kubelet would hang "
                              "on it)" % (args[0] if args else "call", executable, timeout), output, None)
    return proc.returncode, output


def probe_driver(executable, timeout):
    """Call '<driver> init' and parse it like kubelet. Returns the parsed status."""
    rc, output = call_driver(executable, ["init"], timeout)
    return parse_call_output("init", output, rc)


def capability_mismatches(merged, required):
    """Required capabilities that the merged capabilities do not match, as 'name: want X, driver has Y'."""
    out = []
    for key in sorted(required or {}):
        have = merged.get(key)
        if have != required[key]:
            out.append("%s: required %s, driver has %s" % (key, _js(required[key]), _js(have)))
    return out


def _js(value):
    return "unset" if value is None else ("true" if value is True else "false" if value is False else str(value))


def missing_commands(commands, search_path=None):
    """The commands (names or absolute paths) that are not found on the node."""
    path = search_path if search_path is not None else os.environ.get("PATH", "") + ":/sbin:/usr/sbin:/usr/local/sbin"
    missing = []
    for cmd in commands or []:
        if os.path.isabs(cmd):
            if not (os.path.isfile(cmd) and os.access(cmd, os.X_OK)):
                missing.append(cmd)
        elif shutil.which(cmd, path=path) is None:
            missing.append(cmd)
    return missing


def file_sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_checksum(value):
    """'sha256:<hex>' (or bare hex) -> lower-case hex; FlexVolumeError otherwise."""
    if value is None:
        return None
    algo, sep, hexdigest = str(value).partition(":")
    if not sep:
        algo, hexdigest = "sha256", algo
    if algo.lower() != "sha256" or not re.match(r"^[0-9a-fA-F]{64}$", hexdigest):
        raise FlexVolumeError("checksum %r: expected 'sha256:' followed by 64 hex digits, e.g. the output of "
                              "sha256sum" % value)
    return hexdigest.lower()


class PluginDirLock(object):
    """An exclusive flock on the plugin dir itself: serializes changes without leaving files."""

    def __init__(self, plugin_dir):
        self.plugin_dir = plugin_dir
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.plugin_dir, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_executable(src, dest, mode, uid, gid, expected_checksum=None):
    """Copy src to dest (a hidden path) with its final mode and owner, flushed to disk.

    The copy is hashed as it is written; if expected_checksum is given and differs (the source
    changed after it was checked), dest is removed and FlexVolumeError raised.
    """
    digest = hashlib.sha256()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    try:
        with open(src, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view):]
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    if expected_checksum and digest.hexdigest() != expected_checksum:
        os.unlink(dest)
        raise FlexVolumeError("source %s changed while it was being installed (sha256 %s, expected %s); "
                              "nothing was changed, run again" % (src, digest.hexdigest(), expected_checksum))


def _rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


class DriverInstaller(object):
    """Install, upgrade, verify, roll back and remove one driver in one plugin dir.

    Every change is made under hidden names and becomes visible by one rename:
    - a new driver dir is assembled as .<dirname>.ks-new-<pid> and renamed to <dirname>;
    - an upgrade writes .<driver>.ks-new-<pid> in the driver dir and renames it over <driver>;
    - removal renames the dir to .<dirname>.ks-removing-<pid> and then deletes it.
    The replaced executable is kept as a hard link in <dirname>/.backups/.
    """

    def __init__(self, plugin_dir, name, uid=0, gid=0, mode=0o755, keep_backups=3, verify=True,
                 init_timeout=30, required_capabilities=None, now=time.time):
        self.plugin_dir = os.path.normpath(plugin_dir)
        self.name = name if isinstance(name, DriverName) else parse_driver_name(name)
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.keep_backups = keep_backups
        self.verify = verify
        self.init_timeout = init_timeout
        self.required_capabilities = required_capabilities or {}
        self.now = now
        if not mode & 0o100:
            raise FlexVolumeError("mode %s: the owner must be able to execute the driver (kubelet runs it as "
                                  "root); use e.g. 0755" % oct(mode))

    # paths
    @property
    def driver_dir(self):
        return os.path.join(self.plugin_dir, self.name.dirname)

    @property
    def path(self):
        return os.path.join(self.driver_dir, self.name.executable)

    @property
    def backup_dir(self):
        return os.path.join(self.driver_dir, BACKUP_DIR)

    def current(self):
        """What is installed now: None, or dict(checksum, mode, uid, gid, size)."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise
        return {"checksum": file_sha256(self.path), "mode": st.st_mode & 0o7777, "uid": st.st_uid,
                "gid": st.st_gid, "size": st.st_size}

    def backups(self):
        """Backup paths, oldest first (ordered by their sequence number)."""
        prefix = self.name.executable + "."
        try:
            names = os.listdir(self.backup_dir)
        except OSError:
            return []
        seq_names = []
        for n in names:
            seq = n[len(prefix):].split(".")[0] if n.startswith(prefix) else ""
            if seq.isdigit():
                seq_names.append((int(seq), n))
        return [os.path.join(self.backup_dir, n) for _seq, n in sorted(seq_names)]

    def verify_at(self, executable):
        """Probe a driver like kubelet and check required capabilities. Returns the parsed init."""
        status = probe_driver(executable, self.init_timeout)
        mismatches = capability_mismatches(status["capabilities"], self.required_capabilities)
        if mismatches:
            raise DriverCallError("init: capabilities do not match required_capabilities: %s"
                                  % "; ".join(mismatches))
        return status

    def cleanup_stale(self):
        """Remove hidden leftovers of interrupted runs for this driver (call under the lock)."""
        removed = []
        for parent, prefix in ((self.plugin_dir, "." + self.name.dirname), (self.driver_dir, "." + self.name.executable)):
            try:
                entries = os.listdir(parent)
            except OSError:
                continue
            for entry in entries:
                if entry.startswith(prefix + STAGING_TAG) or entry.startswith(prefix + REMOVING_TAG):
                    full = os.path.join(parent, entry)
                    if os.path.isdir(full) and not os.path.islink(full):
                        _rmtree(full)
                    else:
                        os.unlink(full)
                    removed.append(full)
        return removed

    def plan(self, source_checksum):
        """What install() would do: 'install', 'upgrade', 'attributes' or 'none'."""
        cur = self.current()
        if cur is None:
            return "install", cur
        if cur["checksum"] != source_checksum:
            return "upgrade", cur
        if (cur["mode"], cur["uid"], cur["gid"]) != (self.mode, self.uid, self.gid):
            return "attributes", cur
        return "none", cur

    def install(self, source, source_checksum=None, check_mode=False, scratch_dir=None):
        """Make the driver's executable a copy of source. Returns a result dict.

        source must be a readable file on this host. In check mode nothing under plugin_dir is
        written: the new version is verified from a copy in scratch_dir.
        source None means "the file whose sha256 is source_checksum, if the node already has it":
        when the installed driver differs, nothing is installed and the result says
        transfer_required (the action plugin then sends the file).
        """
        if source is None and not source_checksum:
            raise FlexVolumeError("install: give a source file or the checksum of the one expected on the node")
        source_checksum = source_checksum or file_sha256(source)
        result = {"path": self.path, "checksum": source_checksum, "previous_checksum": None,
                  "backup_file": None, "rolled_back": False, "changed": False, "action": "none",
                  "init": None, "capabilities": None, "cleaned_up": [], "transfer_required": False}
        if check_mode:
            action, cur = self.plan(source_checksum)
            result["previous_checksum"] = cur and cur["checksum"]
            if source is None and action in ("install", "upgrade"):
                result["transfer_required"] = True
                return result
            result["action"] = action
            result["changed"] = action != "none"
            if self.verify:
                if action in ("install", "upgrade"):
                    scratch = tempfile.mkdtemp(prefix="flexvolume-check-", dir=scratch_dir)
                    try:
                        probe_path = os.path.join(scratch, self.name.executable)
                        _write_executable(source, probe_path, 0o700, os.getuid(), os.getgid(), source_checksum)
                        status = self._verify_or_fail(probe_path, "the new version", nothing_changed=True)
                    finally:
                        _rmtree(scratch)
                else:
                    status = self._verify_or_fail(self.path, "the installed version", nothing_changed=True)
                result["init"], result["capabilities"] = status, status["capabilities"]
            return result

        if not os.path.isdir(self.plugin_dir):
            os.makedirs(self.plugin_dir, 0o755)
        with PluginDirLock(self.plugin_dir):
            result["cleaned_up"] = self.cleanup_stale()
            action, cur = self.plan(source_checksum)
            result["previous_checksum"] = cur and cur["checksum"]
            if source is None and action in ("install", "upgrade"):
                result["transfer_required"] = True
                result["changed"] = bool(result["cleaned_up"])
                return result
            result["action"] = action
            if action == "install":
                self._install_new(source, result)
            elif action == "upgrade":
                self._upgrade(source, result)
            elif action == "attributes":
                os.chown(self.path, self.uid, self.gid)
                os.chmod(self.path, self.mode)
                result["changed"] = True
            if action in ("none", "attributes") and self.verify:
                status = self._verify_or_fail(self.path, "the installed version", nothing_changed=action == "none")
                result["init"], result["capabilities"] = status, status["capabilities"]
            result["changed"] = result["changed"] or bool(result["cleaned_up"])
        return result

    def _verify_or_fail(self, executable, what, nothing_changed):
        try:
            return self.verify_at(executable)
        except DriverCallError as exc:
            tail = " Nothing was changed." if nothing_changed else ""
            raise DriverCallError("%s %s failed verification: %s. Driver output: %s.%s"
                                  % (self.name.qualified, what, exc.msg, _show(exc.output), tail),
                                  exc.output, exc.rc)

    def _install_new(self, source, result):
        if os.path.isdir(self.driver_dir):
            # The dir is there without its executable (deleted by hand, or only .backups left):
            # put the executable in with one rename, as an upgrade does.
            self._upgrade(source, result)
            return
        staging = os.path.join(self.plugin_dir, ".%s%s%d" % (self.name.dirname, STAGING_TAG, os.getpid()))
        os.mkdir(staging, 0o755)
        try:
            os.chown(staging, self.uid, self.gid)
            os.chmod(staging, 0o755)
            staged_exe = os.path.join(staging, self.name.executable)
            _write_executable(source, staged_exe, self.mode, self.uid, self.gid, result["checksum"])
            if self.verify:
                status = self._verify_or_fail(staged_exe, "the new version", nothing_changed=True)
                result["init"], result["capabilities"] = status, status["capabilities"]
            os.rename(staging, self.driver_dir)
        except BaseException:
            _rmtree(staging)
            raise
        _fsync_dir(self.plugin_dir)
        result["changed"] = True
        self._post_verify(result, backup=None)

    def _upgrade(self, source, result):
        staged_exe = os.path.join(self.driver_dir, ".%s%s%d" % (self.name.executable, STAGING_TAG, os.getpid()))
        backup = None
        try:
            _write_executable(source, staged_exe, self.mode, self.uid, self.gid, result["checksum"])
            if self.verify:
                status = self._verify_or_fail(staged_exe, "the new version", nothing_changed=True)
                result["init"], result["capabilities"] = status, status["capabilities"]
            if result["previous_checksum"]:
                backup = self._backup_current(result["previous_checksum"])
            os.rename(staged_exe, self.path)
        except BaseException:
            if os.path.lexists(staged_exe):
                os.unlink(staged_exe)
            raise
        _fsync_dir(self.driver_dir)
        result["changed"] = True
        result["backup_file"] = backup
        self._post_verify(result, backup=backup)
        self._prune_backups()
        if backup and not os.path.lexists(backup):
            result["backup_file"] = None  # keep_backups=0

    def _backup_current(self, checksum):
        """Hard-link the current executable as <exe>.<seq>.<UTC time>.<sha12> (seq orders backups)."""
        if not os.path.isdir(self.backup_dir):
            os.mkdir(self.backup_dir, 0o700)
        existing = self.backups()
        last = int(os.path.basename(existing[-1])[len(self.name.executable) + 1:].split(".")[0]) if existing else 0
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.now()))
        name = "%s.%06d.%s.%s" % (self.name.executable, last + 1, stamp, checksum[:12])
        backup = os.path.join(self.backup_dir, name)
        if os.path.lexists(backup):
            os.unlink(backup)
        try:
            os.link(self.path, backup)  # the old inode stays intact when the new file is renamed over it
        except OSError:
            shutil.copy2(self.path, backup)
        return backup

    def _post_verify(self, result, backup):
        """Probe the driver at its real path; on failure restore the previous state and fail."""
        if not self.verify:
            return
        try:
            status = self.verify_at(self.path)
        except DriverCallError as exc:
            self._rollback(backup)
            result["rolled_back"] = True
            if backup:
                restored = "the previous version (sha256 %s) is back in place" % result["previous_checksum"]
            else:
                restored = "the new driver dir was removed"
            raise DriverCallError("%s failed verification after install: %s. Driver output: %s. Rolled back: %s."
                                  % (self.name.qualified, exc.msg, _show(exc.output), restored),
                                  exc.output, exc.rc, rolled_back=True)
        result["init"], result["capabilities"] = status, status["capabilities"]

    def _rollback(self, backup):
        if backup:
            staged = os.path.join(self.driver_dir, ".%s%s%d" % (self.name.executable, STAGING_TAG, os.getpid()))
            if os.path.lexists(staged):
                os.unlink(staged)
            os.link(backup, staged)
            os.rename(staged, self.path)
            _fsync_dir(self.driver_dir)
        else:
            self._remove_dir()

    def _prune_backups(self):
        for old in self.backups()[:-self.keep_backups or None] if self.keep_backups else self.backups():
            os.unlink(old)

    def _remove_dir(self):
        hidden = os.path.join(self.plugin_dir, ".%s%s%d" % (self.name.dirname, REMOVING_TAG, os.getpid()))
        os.rename(self.driver_dir, hidden)
        _fsync_dir(self.plugin_dir)
        _rmtree(hidden)

    def remove(self, check_mode=False):
        """Remove the driver dir: hidden rename, then delete. Returns a result dict."""
        exists = os.path.lexists(self.driver_dir)
        cur = self.current()
        result = {"path": self.path, "changed": exists, "previous_checksum": cur and cur["checksum"],
                  "checksum": None, "action": "remove" if exists else "none", "cleaned_up": []}
        if check_mode or not os.path.isdir(self.plugin_dir):
            return result
        with PluginDirLock(self.plugin_dir):
            result["cleaned_up"] = self.cleanup_stale()
            if os.path.lexists(self.driver_dir):
                self._remove_dir()
                result["changed"] = True
            result["changed"] = result["changed"] or bool(result["cleaned_up"])
        return result

    def nudge(self, check_mode=False):
        """Refresh the executable's mtime so kubelet's fsnotify watch fires again."""
        if not check_mode and os.path.exists(self.path):
            os.utime(self.path, None)
        return os.path.exists(self.path)


def scan_plugin_dir(plugin_dir, probe=False, timeout=30):
    """What kubelet's prober would find in plugin_dir, and what looks wrong. Changes nothing.

    Returns dict(drivers=[...], problems=[...]); each problem is dict(path, problem).
    """
    import grp
    import pwd

    def owner(uid, lookup, attr):
        try:
            return getattr(lookup(uid), attr)
        except KeyError:
            return str(uid)

    drivers, problems = [], []
    try:
        entries = sorted(os.listdir(plugin_dir))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return {"exists": False, "drivers": drivers, "problems": problems}
        raise
    for entry in entries:
        full = os.path.join(plugin_dir, entry)
        if entry.startswith("."):
            if STAGING_TAG in entry or REMOVING_TAG in entry:
                problems.append({"path": full, "problem": "leftover of an interrupted install or removal (hidden, "
                                 "kubelet ignores it); the next flexvolume_driver run for that driver removes it"})
            continue
        if not os.path.isdir(full):
            problems.append({"path": full, "problem": "not a directory: kubelet only loads drivers from "
                             "<vendor>~<driver>/ directories and ignores this file"})
            continue
        try:
            name = parse_driver_name(entry)  # kubelet maps dir names the same way
        except FlexVolumeError as exc:
            problems.append({"path": full, "problem": "kubelet would reject this driver name: %s" % exc.msg})
            continue
        exe = os.path.join(full, name.executable)
        try:
            sub_entries = os.listdir(full)
        except OSError:
            sub_entries = []
        for sub in sorted(sub_entries):
            if sub.startswith(".") and (STAGING_TAG in sub or REMOVING_TAG in sub):
                problems.append({"path": os.path.join(full, sub), "problem": "leftover of an interrupted upgrade "
                                 "(hidden, kubelet ignores it); the next flexvolume_driver run removes it"})
        if not os.path.isfile(exe):
            problems.append({"path": exe, "problem": "driver dir without its executable: kubelet fails to load "
                             "%s ('no such file or directory')" % name.qualified})
            continue
        st = os.stat(exe)
        info = {"name": name.qualified, "vendor": name.qualified.rpartition("/")[0] or None,
                "driver": name.executable, "dir": full, "path": exe, "checksum": file_sha256(exe),
                "size": st.st_size, "mode": "%04o" % (st.st_mode & 0o7777),
                "owner": owner(st.st_uid, pwd.getpwuid, "pw_name"),
                "group": owner(st.st_gid, grp.getgrgid, "gr_name"),
                "backups": len(os.listdir(os.path.join(full, BACKUP_DIR)))
                if os.path.isdir(os.path.join(full, BACKUP_DIR)) else 0}
        if not os.access(exe, os.X_OK) or not st.st_mode & 0o100:
            problems.append({"path": exe, "problem": "not executable: kubelet fails to load %s ('permission "
                             "denied')" % name.qualified})
        if probe:
            try:
                status = probe_driver(exe, timeout)
                info.update(loads=True, init=status, capabilities=status["capabilities"], probe_error=None)
            except DriverCallError as exc:
                info.update(loads=False, init=None, capabilities=None,
                            probe_error="%s; output: %s" % (exc.msg, _show(exc.output)))
                problems.append({"path": exe, "problem": "kubelet would fail to load %s: %s"
                                 % (name.qualified, exc.msg)})
        drivers.append(info)
    return {"exists": True, "drivers": drivers, "problems": problems}


def _show(output, limit=2000):
    if isinstance(output, bytes):
        output = output.decode("utf-8", errors="replace")
    output = output or ""
    if len(output) > limit:
        output = output[:limit] + "...(truncated)"
    return repr(output)
