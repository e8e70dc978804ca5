// Validates web/openapi.json with a real OpenAPI validator. Usage: node openapi_test.mjs WEB_DIR
import { createRequire } from "node:module";
const webDir = process.argv[2];
const require = createRequire(webDir + "/package.json");
const SwaggerParser = require("@apidevtools/swagger-parser");
try {
  const api = await SwaggerParser.validate(webDir + "/openapi.json");
  const paths = Object.keys(api.paths);
  for (const p of ["/api/v1/predict", "/api/v1/model", "/api/v1/slides", "/api/v1/slides/{id}", "/api/v1/slides/{id}/fields", "/api/v1/cells/{id}/review", "/api/v1/slides/{id}/sign", "/api/v1/slides/{id}/audit", "/api/v1/audit", "/api/v1/users/{name}/token", "/api/v1/slides/{id}/report", "/api/v1/slides/{id}/annotations.csv", "/predict/", "/health", "/ready", "/metrics", "/openapi.json", "/docs", "/"])
    if (!paths.includes(p)) throw new Error("route missing from the document: " + p);
  console.log(`ok - ${api.info.title} ${api.info.version}: valid OpenAPI ${api.openapi}, ${paths.length} paths`);
  console.log("1 passed, 0 failed");
} catch (err) {
  console.log("not ok - " + err.message);
  console.log("0 passed, 1 failed");
  process.exit(1);
}
