"""Known vulnerabilities in Cargo.lock, from a local checkout of the RustSec advisory database.

    python3 scripts/advisories.py Cargo.lock PATH/TO/advisory-db

`cargo audit` is the tool of record, but it fetches the database from GitHub itself; where
GitHub is unreachable (this project's CI) a checkout copied in by other means can still be
read. Applies cargo-audit's rule: an advisory concerns a locked package unless its version is
in the advisory's `patched` or `unaffected` ranges (withdrawn advisories are skipped). Prints
every advisory that concerns a locked package, with its kind (a vulnerability, or
informational: unsound, unmaintained, ...), and exits 1 if any is a vulnerability.
"""
import os, re, sys, tomllib
lockfile, db = sys.argv[1], sys.argv[2]
def ver(s):
    s = s.split('+')[0]
    core, _, pre = s.partition('-')
    parts = [int(x) for x in core.split('.')] + [0, 0]
    return (parts[0], parts[1], parts[2], 0 if pre else 1, pre)
def cmp_ok(v, c):
    c = c.strip().replace(' ', '')
    m = re.match(r'(>=|<=|>|<|=|\^|~)?(.*)', c)
    op, rv = m.group(1) or '^', m.group(2)
    r = ver(rv)
    if op == '>=': return v >= r
    if op == '<=': return v <= r
    if op == '>': return v > r
    if op == '<': return v < r
    if op == '=': return v[:3] == r[:3]
    if op == '~': return v >= r and v[:2] == r[:2]
    # caret
    if v < r: return False
    if r[0] > 0: return v[0] == r[0]
    if r[1] > 0: return v[0] == 0 and v[1] == r[1]
    return v[:3] == r[:3]
def matches(v, req): return all(cmp_ok(v, c) for c in req.split(','))
lock = tomllib.load(open(lockfile, 'rb'))
found = 0
vulnerabilities = 0
for p in lock['package']:
    d = os.path.join(db, 'crates', p['name'])
    if not os.path.isdir(d): continue
    v = ver(p['version'])
    for f in sorted(os.listdir(d)):
        m = re.search(r'```toml\n(.*?)```', open(os.path.join(d, f)).read(), re.S)
        meta = tomllib.loads(m.group(1)); adv = meta['advisory']; vs = meta.get('versions', {})
        if adv.get('withdrawn'): continue
        if any(matches(v, r) for r in vs.get('patched', []) + vs.get('unaffected', [])): continue
        found += 1
        kind = adv.get('informational', 'vulnerability')
        vulnerabilities += kind == 'vulnerability'
        print(f"{p['name']} {p['version']}: {adv['id']} ({kind}) {adv.get('url', '')}")
print(f"{len(lock['package'])} locked packages, {found} concerned by an advisory, "
      f"{vulnerabilities} of them vulnerabilities")
sys.exit(1 if vulnerabilities else 0)
