// terraform fmt's layout for .tf files without a terraform binary: HashiCorp's hclwrite.Format
// (the formatter `terraform fmt` applies), compiled to WebAssembly in @cdktf/hcl-tools.
// Usage: node terraform_fmt.cjs [--write] FILE...   Prints each file whose layout differs (and,
// without --write, a diff of the first differing lines); exits 1 when any differs and was not written.
const fs = require("fs");
const path = require("path");

const toolsDir = process.env.RECSYS_HCL_TOOLS || path.join(__dirname, "..", "..", ".venv-tools", "node_modules");
const { format } = require(path.join(toolsDir, "@cdktf", "hcl-tools"));

function firstDifference(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `  line ${i + 1}:\n  - ${a[i] ?? ""}\n  + ${b[i] ?? ""}`;
  }
  return "";
}

(async () => {
  const write = process.argv.includes("--write");
  const files = process.argv.slice(2).filter((arg) => arg !== "--write");
  let differs = 0;
  for (const file of files) {
    const source = fs.readFileSync(file, "utf8");
    const formatted = await format(source);
    if (formatted === source) continue;
    if (write) {
      fs.writeFileSync(file, formatted);
      console.log(`formatted ${file}`);
    } else {
      differs++;
      console.log(`${file}\n${firstDifference(source, formatted)}`);
    }
  }
  process.exit(differs ? 1 : 0);
})().catch((error) => {
  console.error(`terraform_fmt: ${error.message}`);
  process.exit(2);
});
