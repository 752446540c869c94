// Start Swagger UI on the gateway's own OpenAPI document (a file, not inline: the page's CSP allows no inline script).
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  persistAuthorization: false,
});
