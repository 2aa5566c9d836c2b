"""Lab kernels: resolve, fetch and cache Debian kernels for the emulated-pmem lab.

Three *series* are known (:data:`SERIES`): ``6.1`` from bookworm, ``6.12``
from bookworm-backports and ``7`` (the newest 7.x) from sid.  Package names
are resolved at run time from Debian's package lists, fetched with a
*private* apt configuration (the system's ``/etc/apt`` is never read or
changed), downloaded with ``apt-get download`` and unpacked with
``dpkg -x`` into the cache::

    $PMEMTRACE_LAB_CACHE (default ~/.cache/pmemtrace/lab)
      lock                          flock(2) held while fetching
      apt/<suite>/                  private apt lists and package cache
      kernels/<release>/
        KERNEL.json                 series, suite, version, packages, date
        debs/*.deb                  what was downloaded
        root/                       dpkg -x of image, modules and headers
          boot/vmlinuz-<release>
          lib/modules/<release>/    (depmod run; build -> headers)
          usr/src/linux-headers-<release>/

What this touches outside the cache: for each fetched kernel a symlink
``/lib/modules/<release> -> <cache>/kernels/<release>/root/lib/modules/<release>``
(the guest sees the host root, and both virtme-ng and ``modprobe`` look
there).  An existing ``/lib/modules/<release>`` that is not such a symlink
is left alone and reported.
"""

import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from typing import NamedTuple

from ..errors import LabError, UsageError

# ---------------------------------------------------------------------------
# Configuration


class Series(NamedTuple):
    """Where a lab kernel series comes from."""

    #: Debian suites searched, comma-separated (the newest image in any wins)
    suite: str
    #: regular expression for the image package; group 1 is the release
    pattern: str

    @property
    def suites(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.suite.split(","))


#: series name -> where it comes from.  The newest matching package wins;
#: flavours (cloud, rt), -dbg and -unsigned packages are never chosen.
#: 5.10 gets its updates (new ABI numbers) in bullseye-security, so both
#: suites are searched.
SERIES = {
    "5.10": Series("bullseye,bullseye-security", r"^linux-image-(5\.10\.0-[0-9]+-amd64)$"),
    "6.1": Series("bookworm", r"^linux-image-(6\.1\.[0-9]+-[0-9]+-amd64)$"),
    "6.12": Series("bookworm-backports", r"^linux-image-(6\.12\.[0-9]+\+deb12-amd64)$"),
    "7": Series("sid", r"^linux-image-(7\.[0-9]+\.[0-9]+\+deb[0-9]+-amd64)$"),
    # trixie-backports carries released 7.3.x; experimental only an -rc
    # ("7.3-amd64", Version 7.3~rc7-1~exp1), which sorts below any 7.3.x
    "7.3": Series("trixie-backports,experimental", r"^linux-image-(7\.3(\.[0-9]+[+]deb[0-9]+)?-amd64)$"),
}

#: Default series booted by ``pmemtrace lab test`` and fetched by ``lab fetch``
#: (the CI kernel list is scripts/test-all.sh's to decide).
DEFAULT_SERIES = ("6.1", "6.12", "7")

DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: security suites (bullseye-security) live in a separate archive
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

#: Package lists older than this are refreshed before resolving (seconds).
LISTS_MAX_AGE = 24 * 3600

# Dependencies we follow when collecting a kernel's packages: the image's
# split packages (sid: linux-binary/-modules/-base-<release>) and the
# headers (+ -common and linux-kbuild).  Everything else (kmod, gcc,
# initramfs-tools...) comes from the host.
_KEEP_DEP = re.compile(r"^linux-(image|binary|modules|base|headers|kbuild)-[0-9]")
_SKIP_DEP = re.compile(r"(-dbg|-unsigned)$")


def cache_dir():
    """The lab cache directory (``$PMEMTRACE_LAB_CACHE`` or ``~/.cache/pmemtrace/lab``)."""
    env = os.environ.get("PMEMTRACE_LAB_CACHE")
    if env:
        return os.path.abspath(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pmemtrace", "lab")


def mirror(suite: str = "") -> str:
    """The archive URL for *suite* (``$PMEMTRACE_LAB_MIRROR``, or
    ``$PMEMTRACE_LAB_SECURITY_MIRROR`` for ``*-security`` suites)."""
    if suite.endswith("-security"):
        return os.environ.get("PMEMTRACE_LAB_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR)
    return os.environ.get("PMEMTRACE_LAB_MIRROR", DEFAULT_MIRROR)


def _status(msg):
    print(f"pmemtrace lab: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Private apt


class _Apt:
    """apt-get/apt-cache bound to a private state directory for one suite."""

    def __init__(self, suite, root=None):
        self.suite = suite
        self.dir = os.path.join(root or cache_dir(), "apt", suite)

    def _opts(self):
        d = self.dir
        return [
            "-o",
            "Dir::Etc::SourceList=/dev/null",
            "-o",
            f"Dir::Etc::SourceParts={d}/parts",
            "-o",
            "Dir::Etc::Preferences=/dev/null",
            "-o",
            f"Dir::Etc::PreferencesParts={d}/parts",
            "-o",
            f"Dir::State::Lists={d}/lists",
            "-o",
            f"Dir::Cache={d}/cache",
            "-o",
            "Dir::State::status=/dev/null",
            "-o",
            "APT::Architecture=amd64",
            "-o",
            "APT::Architectures::=amd64",
            "-o",
            "APT::Sandbox::User=root",
            "-o",
            "Acquire::Languages=none",
        ]

    def _setup(self):
        for sub in ("parts", "lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        src = f"Types: deb\nURIs: {mirror(self.suite)}\nSuites: {self.suite}\nComponents: main\nSigned-By: {KEYRING}\n"
        path = os.path.join(self.dir, "parts", f"{self.suite}.sources")
        if not os.path.exists(path) or open(path).read() != src:
            with open(path, "w") as f:
                f.write(src)

    def _run(self, tool, args, cwd=None):
        cmd = [tool, "-q"] + self._opts() + list(args)
        try:
            p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        except FileNotFoundError:
            raise LabError(f"{tool} not found: the lab needs Debian's apt (run scripts/install-deps.sh)") from None
        if p.returncode != 0:
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            raise LabError(f"{tool} {' '.join(args[:2])} failed for {self.suite}: {' / '.join(tail)}")
        return p.stdout

    def _lists(self):
        # apt may keep them compressed (..._Packages.lz4)
        ldir = os.path.join(self.dir, "lists")
        if not os.path.isdir(ldir):
            return []
        return [os.path.join(ldir, f) for f in os.listdir(ldir) if "_Packages" in f]

    def lists_age(self):
        """Seconds since the package lists were refreshed, or None."""
        files = self._lists()
        if not files:
            return None
        newest = max(os.path.getmtime(f) for f in files)
        return datetime.datetime.now().timestamp() - newest

    def update(self, force=False):
        self._setup()
        age = self.lists_age()
        if force or age is None or age > LISTS_MAX_AGE:
            _status(f"updating package lists for {self.suite} from {mirror(self.suite)}")
            self._run("apt-get", ["update"])
            # apt only rewrites changed lists; touch them so the age check holds.
            for f in self._lists():
                os.utime(f)

    def search(self, regex):
        out = self._run("apt-cache", ["search", "--names-only", regex])
        return [line.split(" - ", 1)[0].strip() for line in out.splitlines() if line.strip()]

    def version(self, pkg):
        out = self._run("apt-cache", ["show", "--no-all-versions", pkg])
        m = re.search(r"^Version: (\S+)", out, re.M)
        return m.group(1) if m else None

    def depends(self, pkg):
        """Direct Depends/PreDepends of *pkg*, first alternative of each group."""
        out = self._run(
            "apt-cache",
            [
                "depends",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
                pkg,
            ],
        )
        deps, skip_next = [], False
        for line in out.splitlines()[1:]:
            m = re.match(r"^ (\|| )(Pre)?Depends: <?([^>\s]+)>?", line)
            if not m:
                continue
            if not skip_next:
                deps.append(m.group(3))
            skip_next = m.group(1) == "|"
        return deps

    def download(self, pkgs, dest):
        os.makedirs(dest, exist_ok=True)
        self._run("apt-get", ["download"] + list(pkgs), cwd=dest)


# ---------------------------------------------------------------------------
# Kernels


class Kernel:
    """A resolved (and maybe fetched) lab kernel.

    :ivar series: ``"6.1"``, ``"6.12"`` or ``"7"``
    :ivar release: kernel release (``uname -r``), e.g. ``6.12.95+deb12-amd64``
    :ivar suite: Debian suite it comes from
    :ivar version: Debian package version of the image
    """

    def __init__(self, series, release, suite, version=None, packages=None, fetched=None, cache=None):
        self.series = series
        self.release = release
        self.suite = suite
        self.version = version
        self.packages = packages or []
        self.fetched = fetched
        self.cache = cache or cache_dir()

    def __repr__(self):
        return f"Kernel({self.series!r}, {self.release!r})"

    @property
    def dir(self):
        return os.path.join(self.cache, "kernels", self.release)

    @property
    def root(self):
        return os.path.join(self.dir, "root")

    @property
    def vmlinuz(self):
        return os.path.join(self.root, "boot", f"vmlinuz-{self.release}")

    @property
    def modules_dir(self):
        return os.path.join(self.root, "lib", "modules", self.release)

    @property
    def headers_dir(self):
        return os.path.join(self.root, "usr", "src", f"linux-headers-{self.release}")

    @property
    def is_cached(self):
        return os.path.exists(os.path.join(self.dir, "KERNEL.json")) and os.path.exists(self.vmlinuz)

    @property
    def host_modules_link(self):
        return os.path.join("/lib/modules", self.release)

    def modules_visible(self):
        """True if ``/lib/modules/<release>`` leads to this kernel's modules."""
        try:
            return os.path.realpath(self.host_modules_link) == os.path.realpath(self.modules_dir)
        except OSError:
            return False

    def to_json(self):
        return {
            "series": self.series,
            "release": self.release,
            "suite": self.suite,
            "version": self.version,
            "packages": self.packages,
            "fetched": self.fetched,
            "cached": self.is_cached,
            "vmlinuz": self.vmlinuz if self.is_cached else None,
            "modules": self.host_modules_link if self.is_cached else None,
            "headers": self.headers_dir if self.is_cached else None,
        }


def _series_of(name):
    """Map a user's kernel name to a series key, or None if it is a release."""
    name = name.strip()
    if name in SERIES:
        return name
    # the most specific series first: 7.3.x is "7.3", other 7.x are "7"
    for pattern, series in (
        (r"5\.10(\.\d+)?", "5.10"),
        (r"7\.3(\.\d+)?", "7.3"),
        (r"7(\.\d+)?", "7"),
        (r"6\.1(\.\d+)?", "6.1"),
        (r"6\.12(\.\d+)?", "6.12"),
    ):
        if re.fullmatch(pattern, name):
            return series
    return None


def release_key(s):
    """Sort key for releases: numbers compare as numbers (6.1.0-9 < 6.1.0-10)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def cached_kernels(cache=None):
    """Kernels present in the cache, sorted by release."""
    cache = cache or cache_dir()
    out = []
    kdir = os.path.join(cache, "kernels")
    if not os.path.isdir(kdir):
        return out
    for rel in sorted(os.listdir(kdir), key=release_key):
        meta = os.path.join(kdir, rel, "KERNEL.json")
        if not os.path.exists(meta):
            continue
        with open(meta) as f:
            d = json.load(f)
        k = Kernel(d["series"], d["release"], d["suite"], d.get("version"), d.get("packages"), d.get("fetched"), cache)
        if k.is_cached:
            out.append(k)
    return out


def resolve(name, update=True, cache=None):
    """Resolve *name* (a series such as ``5.10``/``6.12``/``7``, ``7.2`` or a full
    release) to the newest :class:`Kernel` Debian offers, from the package
    lists (refreshed if older than a day when *update* is true)."""
    cache = cache or cache_dir()
    series = _series_of(name)
    if series is None:
        for k in cached_kernels(cache):
            if k.release == name:
                return k
        raise UsageError(
            f"unknown lab kernel {name!r}: use one of {', '.join(SERIES)} or a cached release (pmemtrace lab kernels)"
        )
    found = []  # (release, suite)
    for suite in SERIES[series].suites:
        found += [
            (release, suite) for release in _search_suite(suite, SERIES[series].pattern, name, series, update, cache)
        ]
    if not found:
        raise LabError(
            f"no kernel image matching {name!r} in Debian {SERIES[series].suite} "
            f"({', '.join(sorted({mirror(s) for s in SERIES[series].suites}))})"
        )
    release, suite = max(found, key=lambda rs: release_key(rs[0]))
    return Kernel(series, release, suite, _Apt(suite, cache).version(f"linux-image-{release}"), cache=cache)


def _search_suite(suite, regex, name, series, update, cache):
    """Releases in *suite* whose image matches *regex* and the user's *name*."""
    apt = _Apt(suite, cache)
    if update:
        apt.update()
    elif apt.lists_age() is None:
        raise LabError(f"no package lists for {suite} yet: run `pmemtrace lab fetch {series}`")
    releases = []
    for pkg in apt.search(regex.replace(r"\+", r"[+]")):
        m = re.match(regex, pkg)
        if m and (
            name == series
            or m.group(1).startswith(name + ".")
            or m.group(1).startswith(name + "-")
            or m.group(1) == name
        ):
            releases.append(m.group(1))
    return releases


def find(name, cache=None):
    """The newest *cached* kernel matching *name* (no network), or None."""
    cache = cache or cache_dir()
    series = _series_of(name)
    best = None
    for k in cached_kernels(cache):
        if (
            k.release == name
            or (
                series
                and k.series == series
                and (name == series or k.release.startswith(name + ".") or k.release.startswith(name + "-"))
            )
        ) and (best is None or release_key(k.release) > release_key(best.release)):
            best = k
    return best


@contextlib.contextmanager
def cache_lock(cache=None):
    """Exclusive flock on ``<cache>/lock`` so concurrent fetches do not collide."""
    cache = cache or cache_dir()
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, "lock"), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _status(f"waiting for another fetch holding {cache}/lock")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _collect_packages(apt, release):
    todo = [f"linux-image-{release}", f"linux-headers-{release}"]
    seen = []
    while todo:
        pkg = todo.pop(0)
        if pkg in seen:
            continue
        seen.append(pkg)
        for dep in apt.depends(pkg):
            if _KEEP_DEP.match(dep) and not _SKIP_DEP.search(dep) and dep not in seen:
                todo.append(dep)
    return seen


def _relativize_symlinks(root):
    """Point absolute symlinks inside *root* (``/usr/src/...``,
    ``/usr/lib/linux-kbuild-*``) at their copy inside *root*, relatively,
    so the tree works wherever the cache lives."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                continue
            target = os.readlink(p)
            if not target.startswith("/"):
                continue
            inside = os.path.join(root, target.lstrip("/"))
            if os.path.lexists(inside):
                os.unlink(p)
                os.symlink(os.path.relpath(inside, dirpath), p)


def _normalize_modules(root, release):
    # sid ships /usr/lib/modules (merged /usr); depmod -b and our host link
    # want <root>/lib/modules/<release>.
    usr_mod = os.path.join(root, "usr", "lib", "modules", release)
    lib_mod = os.path.join(root, "lib", "modules", release)
    if not os.path.lexists(lib_mod) and os.path.isdir(usr_mod):
        os.makedirs(os.path.dirname(lib_mod), exist_ok=True)
        os.symlink(os.path.relpath(usr_mod, os.path.dirname(lib_mod)), lib_mod)
    if not os.path.isdir(lib_mod):
        raise LabError(f"no modules for {release} in the downloaded packages")
    build = os.path.join(lib_mod, "build")
    headers = os.path.join(root, "usr", "src", f"linux-headers-{release}")
    if os.path.isdir(headers):
        if os.path.lexists(build):
            os.unlink(build)
        os.symlink(os.path.relpath(headers, os.path.realpath(lib_mod)), build)
    # vmlinuz may sit in /usr/lib/linux or /boot depending on packaging.
    vmlinuz = os.path.join(root, "boot", f"vmlinuz-{release}")
    if not os.path.exists(vmlinuz) and os.path.isfile(os.path.join(lib_mod, "vmlinuz")):
        # sid's linux-binary-<release> ships /usr/lib/modules/<release>/vmlinuz
        os.makedirs(os.path.dirname(vmlinuz), exist_ok=True)
        os.symlink(
            os.path.relpath(os.path.join(os.path.realpath(lib_mod), "vmlinuz"), os.path.dirname(vmlinuz)), vmlinuz
        )
    if not os.path.exists(vmlinuz):
        for dirpath, _, files in os.walk(root):
            if f"vmlinuz-{release}" in files:
                os.makedirs(os.path.dirname(vmlinuz), exist_ok=True)
                os.symlink(
                    os.path.relpath(os.path.join(dirpath, f"vmlinuz-{release}"), os.path.dirname(vmlinuz)), vmlinuz
                )
                break
    if not os.path.exists(vmlinuz):
        raise LabError(f"no vmlinuz-{release} in the downloaded packages")
    depmod = shutil.which("depmod") or "/usr/sbin/depmod"
    if not os.path.exists(depmod):
        raise LabError("depmod not found: install kmod (scripts/install-deps.sh)")
    p = subprocess.run([depmod, "-b", root, release], capture_output=True, text=True)
    if p.returncode != 0:
        raise LabError(f"depmod failed for {release}: {p.stderr.strip()[-300:]}")


def link_modules(kernel):
    """Create ``/lib/modules/<release>`` -> cache so the guest (which sees the
    host root) finds the modules and headers.  Idempotent."""
    link = kernel.host_modules_link
    target = os.path.realpath(kernel.modules_dir)
    if os.path.islink(link):
        if os.path.realpath(link) == target:
            return link
        os.unlink(link)  # an older cache location of ours
    elif os.path.exists(link):
        raise LabError(
            f"{link} exists and is not a pmemtrace lab link; move it away to use the cached {kernel.release}"
        )
    try:
        os.makedirs("/lib/modules", exist_ok=True)
        os.symlink(target, link)
    except PermissionError:
        raise LabError(f"cannot create {link}: run as root, or create it by hand: ln -s {target} {link}") from None
    return link


def fetch(name, force=False, cache=None):
    """Resolve and fetch kernel *name* into the cache; return the :class:`Kernel`.

    Holds the cache lock; a kernel already cached is not downloaded again
    (unless *force*), but its ``/lib/modules`` link is (re)created.
    """
    cache = cache or cache_dir()
    with cache_lock(cache):
        try:
            kernel = resolve(name, update=True, cache=cache)
        except LabError:
            kernel = find(name, cache)
            if kernel is None:
                raise
            _status(f"registry unreachable; using cached {kernel.release}")
        if kernel.is_cached and not force:
            link_modules(kernel)
            return cached_or(kernel)
        apt = _Apt(kernel.suite, cache)
        pkgs = _collect_packages(apt, kernel.release)
        tmp = kernel.dir + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        debs = os.path.join(tmp, "debs")
        _status(f"downloading {kernel.release} from {kernel.suite}: {' '.join(pkgs)}")
        apt.download(pkgs, debs)
        root = os.path.join(tmp, "root")
        os.makedirs(root)
        for deb in sorted(os.listdir(debs)):
            if deb.endswith(".deb"):
                p = subprocess.run(["dpkg-deb", "-x", os.path.join(debs, deb), root], capture_output=True, text=True)
                if p.returncode != 0:
                    raise LabError(f"dpkg-deb -x {deb} failed: {p.stderr.strip()[-200:]}")
        _relativize_symlinks(root)
        _normalize_modules(root, kernel.release)
        kernel.packages = pkgs
        kernel.fetched = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = {k: getattr(kernel, k) for k in ("series", "release", "suite", "version", "packages", "fetched")}
        meta["mirror"] = mirror(kernel.suite)
        with open(os.path.join(tmp, "KERNEL.json"), "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        shutil.rmtree(kernel.dir, ignore_errors=True)
        os.makedirs(os.path.dirname(kernel.dir), exist_ok=True)
        os.rename(tmp, kernel.dir)
        link_modules(kernel)
        _status(f"cached {kernel.release} in {kernel.dir}")
        return kernel


def cached_or(kernel):
    """The cached record for *kernel* (with packages/date), or *kernel* itself."""
    for k in cached_kernels(kernel.cache):
        if k.release == kernel.release:
            return k
    return kernel


def get(name, fetch_missing=True, cache=None):
    """A cached kernel for *name*, fetching it if needed (and allowed).

    Prefers what is cached (no network) so boots work offline.
    """
    k = find(name, cache)
    if k is not None:
        if not k.modules_visible():
            link_modules(k)
        return k
    if not fetch_missing:
        raise LabError(f"kernel {name!r} is not cached: run `pmemtrace lab fetch {name}`")
    return fetch(name, cache=cache)
