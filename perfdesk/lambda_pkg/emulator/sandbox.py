"""The execution environment's launcher: builds Lambda's filesystem view and starts the runtime in it.

Run by the emulator as ``python -I -S -B sandbox.py CONFIG.json`` (standard library only: it must not import
perfdesk, and it never stays: it ends in ``execve`` of the runtime's interpreter). As root, with ``mode =
"namespace"``, it

1. joins the environment's cgroups (memory limit, CPU quota) before anything is allocated;
2. enters a mount namespace and a PID namespace of its own (``unshare(CLONE_NEWNS | CLONE_NEWPID)``; it forks,
   stays outside as the runtime's supervisor and ends as the runtime ends, while the child, PID 1 inside, goes on;
   when PID 1 ends the kernel ends whatever the function started) and builds a new root on a
   tmpfs: the host's ``/usr``, ``/etc``, ``/lib*`` and ``/bin`` read-only (with ``/usr/local`` and the host's
   Python package folders masked, so no path of the host's Python environment is importable), the runtime's
   interpreter as ``/var/lang`` and its bootstrap as ``/var/runtime`` (read-only), the code as ``/var/task``
   (read-only), the layers merged under ``/opt`` (read-only overlay, later layers over earlier ones, as Lambda
   extracts them), ``/tmp`` an ext4 file system of the function's ephemeral storage size on a loop device
   (disk-backed like Lambda's; a size-limited tmpfs where no loop device can be had), ``/proc``, ``/sys``
   (read-only) and a few ``/dev`` nodes;
3. ``pivot_root``s into it, makes it read-only, drops to Lambda's sandbox user (uid 993, gid 990, no
   supplementary groups, ``no_new_privs``, 1,024 open files), asks for ``SIGKILL`` when the emulator dies
   (``PR_SET_PDEATHSIG``; set after the uid change, which clears it) and executes the runtime.

Before ``execve`` it writes one JSON line to the status pipe: ``{"ok": true, "tmp": ..., "exec_ns": ...}`` (the
monotonic time the runtime starts: where Init Duration begins) or ``{"ok": false, "error": ...}``.

``python sandbox.py --probe`` tries steps 2 and 3 on an empty root and prints what works here (the emulator runs it
once to choose its mode and to say in its description which it could not have).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import resource
import signal
import struct
import sys
import time

CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
LOOP_CTL_GET_FREE, LOOP_CONFIGURE = 0x4C82, 0x4C0A
LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO = 4, 16
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
#: host folders that hold Python packages of the host; covered by empty read-only tmpfs in the sandbox
MASKED = ("/usr/local", "/usr/lib/python3", "/usr/lib/python2.7")
DEV_NODES = ("null", "zero", "full", "random", "urandom")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None):
    return None if s is None else s.encode()


def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_b(src), _b(dst), _b(fstype), ctypes.c_ulong(flags), _b(data)), f"mount {src} on {dst}")


def bind(src: str, dst: str, readonly: bool = True, recursive: bool = False) -> None:
    mount(src, dst, None, MS_BIND | (MS_REC if recursive else 0))
    if readonly:
        mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _mkpoint(path: str, like: str | None = None) -> None:
    """A mount point: a directory, or an empty file where a file is mounted."""
    if like is not None and not os.path.isdir(like):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()
    else:
        os.makedirs(path, exist_ok=True)


def _loop_attach(image: str, node_dir: str) -> tuple[str, int]:
    """Attach ``image`` to a free loop device (autoclear: it detaches when unmounted); return (device, fd)."""
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(16):
            number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            dev = f"/dev/loop{number}"
            if not os.path.exists(dev):  # a container's static /dev lacks the nodes the kernel adds on demand
                dev = os.path.join(node_dir, f"loop{number}")
                if not os.path.exists(dev):
                    os.mknod(dev, 0o600 | 0o060000, os.makedev(7, number))
            fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            info = struct.pack(
                "=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO, b"", b"", b"", 0, 0
            )
            config = struct.pack("=II", backing, 0) + info + bytes(64)
            try:
                fcntl.ioctl(fd, LOOP_CONFIGURE, config)
                return dev, fd
            except OSError as exc:
                os.close(fd)
                if exc.errno == errno.EINVAL:  # the backing file system refuses direct I/O: buffered then
                    info = info[:52] + struct.pack("=I", LO_FLAGS_AUTOCLEAR) + info[56:]
                    fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
                    try:
                        fcntl.ioctl(fd, LOOP_CONFIGURE, struct.pack("=II", backing, 0) + info + bytes(64))
                        return dev, fd
                    except OSError:
                        os.close(fd)
                        raise
                if exc.errno != errno.EBUSY:  # EBUSY: another launcher took it first; ask again
                    raise
        raise OSError(errno.EBUSY, "no free loop device after 16 tries")
    finally:
        os.close(backing)
        os.close(ctl)


def _mount_tmp(root: str, tmp: dict) -> str:
    """/tmp: the ext4 image on a loop device, else a tmpfs of the same size. Returns which."""
    target = root + "/tmp"
    image = tmp.get("image")
    if image:
        try:
            dev, fd = _loop_attach(image, root)
            try:
                mount(dev, target, "ext4", MS_NOSUID | MS_NODEV)
            finally:
                os.close(fd)
                if dev.startswith(root):
                    os.unlink(dev)
            name = os.path.basename(dev)
            try:  # ext4 keeps 2% (at most 4,096 clusters) for itself: give the function all of its size
                with open(f"/sys/fs/ext4/{name}/reserved_clusters", "w") as fh:
                    fh.write("0")
            except OSError:
                pass
            try:
                os.rmdir(target + "/lost+found")
            except OSError:
                pass
            os.chmod(target, 0o1777)
            return "ext4"
        except OSError as exc:
            tmp["loop_error"] = str(exc)
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(tmp['size_mb'])}m,mode=1777")
    return "tmpfs"


def build_image_root(cfg: dict) -> str:
    """A container image's root instead (``image_root``): its unpacked file system, read-only and shared by every
    environment of the image, with this environment's /tmp, /proc, /sys and /dev on the mount points it has (the
    emulator made them when it unpacked it). Nothing of the host is in it. Returns the /tmp kind."""
    root = cfg["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    os.makedirs(root, exist_ok=True)
    bind(cfg["image_root"], root)
    tmp_kind = _mount_tmp(root, cfg.get("tmp") or {"size_mb": 512})
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    bind("/sys", root + "/sys")
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for node in DEV_NODES:
        if os.path.exists("/dev/" + node):
            _mkpoint(f"{root}/dev/{node}", "/dev/" + node)
            bind("/dev/" + node, f"{root}/dev/{node}", readonly=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(target, f"{root}/dev/{name}")
    os.symlink("/proc/self/fd/2", f"{root}/dev/stderr")
    sysno = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if sysno is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown machine {os.uname().machine}")
    os.chdir(root)
    _check(_libc.syscall(sysno, b".", b"."), "pivot_root")  # the old root stacks under the new: no folder for it
    _check(_libc.umount2(b".", MNT_DETACH), "umount2(old root)")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
    return tmp_kind


def build_root(cfg: dict) -> str:
    """Steps 2 and 3 up to the pivot, in a mount namespace already entered: the new root, its mounts, pivot_root,
    read-only. Returns the /tmp kind."""
    if cfg.get("image_root"):
        return build_image_root(cfg)
    root = cfg["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    os.makedirs(root, exist_ok=True)
    mount("tmpfs", root, "tmpfs", MS_NOSUID, "size=16m,mode=0755")
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), f"{root}/{name}")
        elif os.path.isdir(host):
            _mkpoint(f"{root}/{name}")
            bind(host, f"{root}/{name}")
    for name in ("usr", "etc"):
        _mkpoint(f"{root}/{name}")
        bind("/" + name, f"{root}/{name}")
    for path in MASKED:
        if os.path.isdir(path):
            mount("tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
    for name, text in (cfg.get("etc_files") or {}).items():
        src = f"{root}/.etc-{name}"
        with open(src, "w") as fh:
            fh.write(text)
        os.chmod(src, 0o644)
        bind(src, f"{root}/etc/{name}")
        os.unlink(src)
    for src, dst in cfg.get("binds") or []:
        _mkpoint(root + dst, src)
        bind(src, root + dst)
    _mkpoint(root + "/opt")
    layers = cfg.get("layers") or []
    if len(layers) == 1:
        bind(layers[0], root + "/opt")
    elif layers:
        lower = ":".join(reversed(layers))  # overlayfs: leftmost is on top; Lambda: later layers over earlier
        mount("overlay", root + "/opt", "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, f"lowerdir={lower}")
    _mkpoint(root + "/tmp")
    tmp_kind = _mount_tmp(root, cfg.get("tmp") or {"size_mb": 512})
    _mkpoint(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mkpoint(root + "/sys")
    bind("/sys", root + "/sys")
    _mkpoint(root + "/dev")
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for node in DEV_NODES:
        if os.path.exists("/dev/" + node):
            _mkpoint(f"{root}/dev/{node}", "/dev/" + node)
            bind("/dev/" + node, f"{root}/dev/{node}", readonly=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(target, f"{root}/dev/{name}")
    os.symlink("/proc/self/fd/2", f"{root}/dev/stderr")
    for path in cfg.get("mkdirs") or []:
        os.makedirs(root + path, exist_ok=True)
    old = root + "/.old-root"
    os.mkdir(old)
    sysno = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if sysno is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown machine {os.uname().machine}")
    _check(_libc.syscall(sysno, _b(root), _b(old)), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old-root", MNT_DETACH), "umount2(/.old-root)")
    os.rmdir("/.old-root")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
    return tmp_kind


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def die_with_parent(parent: int | None) -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if parent is not None and os.getppid() != parent:  # the emulator died before the signal was armed
        raise OSError(errno.ESRCH, "the emulator is gone")


def _supervise(child: int) -> None:
    """The launcher outside the PID namespace: wait for the runtime (PID 1 inside; when it ends, the kernel ends
    everything the function started) and end the same way, so the emulator sees the runtime's own exit status."""
    for fd in range(3, 256):  # the status pipe is the child's to close: EOF must mean the child is done with it
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(70)
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot have a handler
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 70)


def _status(fd: int, data: dict) -> None:
    line = (json.dumps(data) + "\n").encode()
    if fd >= 0:
        os.write(fd, line)
        os.close(fd)
    elif not data.get("ok"):
        os.write(2, line)


def launch(cfg: dict) -> None:
    status_fd = int(cfg.get("status_fd", -1))
    try:
        die_with_parent(int(cfg["parent"]))
        isolated = cfg.get("mode") == "namespace"
        host_pid = os.getpid()
        if isolated:
            # a mount namespace and a PID namespace: the runtime is PID 1 of its own, so nothing it starts can
            # outlive it, and it sees no other process of this machine
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare(CLONE_NEWNS | CLONE_NEWPID)")
            child = os.fork()
            if child:
                _supervise(child)
            die_with_parent(None)  # PID 1 here: its parent (the supervisor) is outside the namespace
            host_pid = int(os.readlink("/proc/self"))  # still this machine's /proc: the pid the emulator sees
        for path in cfg.get("cgroups") or []:
            with open(path, "w") as fh:
                fh.write("0")  # "0": the writing process, whatever its pid in its own namespace
        tmp_kind = "host"
        if isolated:
            tmp_kind = build_root(cfg)
        for name, (soft, hard) in (cfg.get("rlimits") or {}).items():
            resource.setrlimit(getattr(resource, "RLIMIT_" + name), (soft, hard))
        if isolated:
            drop_privileges(int(cfg["uid"]), int(cfg["gid"]))
            die_with_parent(None)  # the uid change cleared it
        os.chdir(cfg["cwd"])
        info = {"ok": True, "pid": host_pid, "tmp": tmp_kind, "exec_ns": time.monotonic_ns()}
        if (cfg.get("tmp") or {}).get("loop_error"):
            info["loop_error"] = cfg["tmp"]["loop_error"]
        _status(status_fd, info)
        status_fd = -1
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as exc:  # noqa: BLE001 - whatever failed, the emulator must hear it
        try:
            _status(status_fd, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            os._exit(70)


def probe(work: str) -> dict:
    """What this machine allows: a mount namespace with a new root, the sandbox user, a loop-mounted /tmp."""
    out: dict = {"root": os.geteuid() == 0, "namespace": False, "loop": False}
    if os.geteuid() != 0:
        out["reason"] = "the emulator does not run as root (mount namespaces and the sandbox user need it)"
        return out
    image = os.path.join(work, "probe.img")
    pid = os.fork()
    if pid == 0:  # the child tries; the probing process stays as it was
        cfg = {
            "root": os.path.join(work, "root"),
            "tmp": {"image": image if os.path.exists(image) else None, "size_mb": 1},
        }
        code = 0
        try:
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare(CLONE_NEWNS | CLONE_NEWPID)")
            inner = os.fork()  # /proc of the new PID namespace can only be mounted by a process inside it
            if inner:
                _, status = os.waitpid(inner, 0)
                os._exit(os.waitstatus_to_exitcode(status))
            kind = build_root(cfg)
            drop_privileges(993, 990)
            code = 0 if kind == "ext4" else 1
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"{type(exc).__name__}: {exc}\n".encode())
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    out["namespace"] = code in (0, 1)
    out["loop"] = code == 0
    if code == 2:
        out["reason"] = "could not build the sandbox's root (see the emulator's stderr)"
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        print(json.dumps(probe(sys.argv[2])), flush=True)
    else:
        with open(sys.argv[1]) as fh:
            config = json.load(fh)
        launch(config)
