#!/usr/bin/env bash
# Scaffolds a lib: tools/scripts/new-project.sh <name> <type> <scope>
# Creates libs/<name> with project.json, tsconfigs, jest config and src/index.ts,
# and registers the @ferry/<name> path alias in tsconfig.base.json.
set -euo pipefail
name=$1 type=$2 scope=$3
root=libs/$name
mkdir -p "$root/src/lib"
cat > "$root/project.json" <<JSON
{
  "name": "$name",
  "\$schema": "../../node_modules/nx/schemas/project-schema.json",
  "sourceRoot": "$root/src",
  "projectType": "library",
  "tags": ["type:$type", "scope:$scope"],
  "targets": {
    "lint": { "executor": "@nx/eslint:lint" },
    "test": {
      "executor": "@nx/jest:jest",
      "outputs": ["{workspaceRoot}/coverage/{projectRoot}"],
      "options": { "jestConfig": "$root/jest.config.ts" }
    }
  }
}
JSON
cat > "$root/tsconfig.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": { "types": ["node", "jest"] },
  "include": ["src/**/*.ts"]
}
JSON
cat > "$root/tsconfig.spec.json" <<JSON
{
  "extends": "./tsconfig.json",
  "compilerOptions": { "outDir": "../../dist/out-tsc", "module": "commonjs", "types": ["jest", "node"] },
  "include": ["src/**/*.ts"]
}
JSON
cat > "$root/jest.config.ts" <<JSON
export default {
  displayName: '$name',
  preset: '../../jest.preset.js',
  rootDir: '.',
  coverageDirectory: '../../coverage/$root',
};
JSON
[ -f "$root/src/index.ts" ] || echo "export {};" > "$root/src/index.ts"
node -e '
const fs=require("fs");const f="tsconfig.base.json";const j=JSON.parse(fs.readFileSync(f,"utf8"));
j.compilerOptions.paths["@ferry/'"$name"'"]=["'"$root"'/src/index.ts"];
j.compilerOptions.paths=Object.fromEntries(Object.entries(j.compilerOptions.paths).sort());
fs.writeFileSync(f,JSON.stringify(j,null,2)+"\n");'
npx prettier --write tsconfig.base.json >/dev/null
