/**
 * flowcell's version lives in one place, flowcell/_version.py. The front end's
 * package.json (and its lock file) follow it here, before every build, so
 * `jupyter labextension list` and the Flow panel report the Python package's version.
 */
const fs = require('fs');
const path = require('path');

const source = path.join(__dirname, '..', '..', 'flowcell', '_version.py');
const match = /__version__\s*=\s*["']([^"']+)["']/.exec(fs.readFileSync(source, 'utf8'));
if (!match) {
  console.error(`${source} has no line __version__ = "X.Y.Z".`);
  process.exit(1);
}
// PEP 440 pre-releases as semver: 1.2.0a1 -> 1.2.0-alpha.1, 1.2.0.dev3 -> 1.2.0-dev.3.
const version = match[1]
  .replace(/a(\d+)$/, '-alpha.$1')
  .replace(/b(\d+)$/, '-beta.$1')
  .replace(/rc(\d+)$/, '-rc.$1')
  .replace(/\.dev(\d+)$/, '-dev.$1');

function update(file, apply) {
  const full = path.join(__dirname, '..', file);
  if (!fs.existsSync(full)) {
    return;
  }
  const data = JSON.parse(fs.readFileSync(full, 'utf8'));
  if (apply(data)) {
    fs.writeFileSync(full, JSON.stringify(data, null, 2) + '\n');
    console.log(`${file}: version ${version}`);
  }
}

update('package.json', pkg => {
  const changed = pkg.version !== version;
  pkg.version = version;
  return changed;
});
update('package-lock.json', lock => {
  const root = (lock.packages || {})[''] || {};
  const changed = lock.version !== version || root.version !== version;
  lock.version = version;
  root.version = version;
  return changed;
});
