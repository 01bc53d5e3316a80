import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "coverage/", "vitest.json", "dist/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Plain-JS launchers run on Node.
    files: ["**/*.js"],
    languageOptions: { globals: { process: "readonly", console: "readonly", URL: "readonly" } },
  },
  {
    // The dashboard page's script runs in the browser, with uPlot loaded before it.
    files: ["services/dashboard/public/**/*.js"],
    languageOptions: {
      sourceType: "script",
      globals: { document: "readonly", window: "readonly", EventSource: "readonly", uPlot: "readonly", console: "readonly" },
    },
  },
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
);
