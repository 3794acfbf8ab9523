"""Helpers of scripts/image-check: the Docker build context and the Dockerfile's instructions.

  image-check.py context REPO DEST < NUL-separated paths   hard-links the context's files into DEST
  image-check.py plan DOCKERFILE                            the build stage, one instruction a line
  image-check.py copy CONTEXT STAGE DEST SOURCE...          one COPY, from the context into the stage
  image-check.py runtime DOCKERFILE                         the runtime stage, as bash declarations
"""
import json
import os
import re
import shlex
import shutil
import sys


# ---- .dockerignore, matched as Docker matches it ------------------------------------------------

def ignore_patterns(repo):
    """(negated, regex) per pattern of REPO/.dockerignore, in order."""
    patterns = []
    path = os.path.join(repo, ".dockerignore")
    if not os.path.exists(path):
        return patterns
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:].strip()
        line = os.path.normpath(line.lstrip("/"))
        patterns.append((negated, re.compile(glob_regex(line))))
    return patterns


def glob_regex(pattern):
    """Go's filepath.Match syntax plus Docker's `**`: `*` and `?` stay within one path element."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(.*/)?"  # any number of directories, none included
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i)
            if end < 0:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1:end].replace("!", "^", 1) + "]"
                i = end
        else:
            out += re.escape(c)
        i += 1
    return "^" + out + "$"


def excluded(path, patterns):
    """Whether Docker leaves PATH out: the last pattern matching it, or one of its parent
    directories, decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for negated, regex in patterns:
        if any(regex.match(candidate) for candidate in candidates):
            verdict = not negated
    return verdict


def make_context(repo, dest):
    patterns = ignore_patterns(repo)
    paths = [p for p in sys.stdin.buffer.read().decode("utf-8").split("\0") if p]
    kept = 0
    for path in sorted(set(paths)):
        source = os.path.join(repo, path)
        if not os.path.isfile(source) or excluded(path, patterns):
            continue
        target = os.path.join(dest, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        link_or_copy(source, target)
        kept += 1
    tops = sorted({p.split("/")[0] for p in os.listdir(dest)})
    print(f"{kept} files: {' '.join(tops)}")


def link_or_copy(source, target):
    # A hard link keeps the inode and times SwiftPM compares (--reuse-build); a copy elsewhere.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# ---- Dockerfile ------------------------------------------------------------------------------------

def instructions(dockerfile):
    """(keyword, arguments) per instruction; continuation lines joined, comments dropped."""
    result = []
    current = ""
    for raw in open(dockerfile, encoding="utf-8"):
        line = raw.rstrip("\n")
        if line.strip().startswith("#"):  # a comment, also between continuation lines
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            keyword, _, arguments = current.strip().partition(" ")
            result.append((keyword.upper(), arguments.strip()))
        current = ""
    return result


def stages(dockerfile):
    """[(name, [(keyword, arguments)])] per FROM."""
    result = []
    for keyword, arguments in instructions(dockerfile):
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            result.append((name, []))
        elif result:
            result[-1][1].append((keyword, arguments))
    return result


def apt_packages(command):
    """The packages of the `apt-get install` in COMMAND, or None when it has none."""
    match = re.search(r"apt-get install ([^&]*)", command)
    if not match:
        return None
    return [w for w in match.group(1).split() if not w.startswith("-")]


def plan(dockerfile):
    build = [s for s in stages(dockerfile) if s[0] == "build"]
    if not build:
        sys.exit("no stage named build")
    for keyword, arguments in build[0][1]:
        if keyword == "RUN":
            packages = apt_packages(arguments)
            if packages is not None:
                print("APT\t" + " ".join(packages))
            else:
                print("RUN\t" + arguments)
        elif keyword == "COPY":
            words = arguments.split()
            if any(w.startswith("--from") for w in words):
                sys.exit("a COPY --from in the build stage is not replayed: " + arguments)
            words = [w for w in words if not w.startswith("--")]
            print("COPY\t" + " ".join(words[:-1]) + "\t" + words[-1])
        elif keyword == "WORKDIR":
            print("WORKDIR\t" + arguments)
        elif keyword in ("ARG", "ENV", "LABEL"):
            pass
        else:
            sys.exit(f"{keyword} in the build stage is not replayed")


def copy(context, stage, dest, sources):
    """COPY SOURCES DEST: a file to DEST (or into it when it ends in /), a directory's contents
    into DEST; only what the context holds."""
    for source in sources:
        origin = os.path.join(context, os.path.normpath(source))
        if not os.path.exists(origin):
            sys.exit(f"COPY {source}: not in the build context (.dockerignore?)")
        if os.path.isdir(origin):
            target_root = os.path.join(stage, dest)
            for directory, _, files in os.walk(origin):
                for name in files:
                    relative = os.path.relpath(os.path.join(directory, name), origin)
                    target = os.path.join(target_root, relative)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    link_or_copy(os.path.join(directory, name), target)
        else:
            target = os.path.join(stage, dest)
            if dest.endswith("/") or len(sources) > 1:
                target = os.path.join(target, os.path.basename(source))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            link_or_copy(origin, target)


def exec_form(arguments):
    """A JSON array (exec form), or `sh -c` around the shell form."""
    arguments = arguments.strip()
    if arguments.startswith("["):
        return json.loads(arguments)
    return ["/bin/sh", "-c", arguments]


def runtime(dockerfile):
    _, body = stages(dockerfile)[-1]
    copies, context_copies, packages, env, user = [], [], [], [], ""
    entrypoint, healthcheck = [], []
    for keyword, arguments in body:
        if keyword == "COPY" and "--from=build" in arguments:
            words = [w for w in arguments.split() if not w.startswith("--")]
            copies += words[:-1]
        elif keyword == "COPY":
            context_copies += [w for w in arguments.split() if not w.startswith("--")][:-1]
        elif keyword == "RUN":
            packages += apt_packages(arguments) or []
        elif keyword == "ENV":
            env += shlex.split(arguments)
        elif keyword == "USER":
            user = arguments
        elif keyword == "ENTRYPOINT":
            entrypoint = exec_form(arguments)
        elif keyword == "HEALTHCHECK":
            _, _, command = arguments.partition("CMD ")
            healthcheck = exec_form(command)
    declare = lambda name, values: f"{name}=({' '.join(shlex.quote(v) for v in values)})"
    print(declare("RUNTIME_COPIES", copies))
    print(declare("RUNTIME_CONTEXT_COPIES", context_copies))
    print(declare("RUNTIME_PACKAGES", packages))
    print(declare("RUNTIME_ENV", env))
    print(f"RUNTIME_USER={shlex.quote(user)}")
    print(declare("ENTRYPOINT", entrypoint))
    print(declare("HEALTHCHECK", healthcheck))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "context":
        make_context(sys.argv[2], sys.argv[3])
    elif command == "plan":
        plan(sys.argv[2])
    elif command == "copy":
        copy(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif command == "runtime":
        runtime(sys.argv[2])
    else:
        sys.exit(__doc__)
