# llm-gateway as a container: the wheel built from this checkout, run as a non-root user, state in /data.
#   docker build -t llm-gateway .
#   docker run -p 4000:4000 -v llm-gateway-data:/data llm-gateway        # SQLite in the volume
#   docker compose -f compose.sqlite.yaml up -d                           # SQLite, the key in its own volume
#   docker compose up -d                                                  # with PostgreSQL: see compose.yaml
# deploy/docker-entrypoint.sh migrates the schema first (LLM_GATEWAY_MIGRATE_ON_START=false: not) and reads the
# key ring from LLM_GATEWAY_ENCRYPTION_KEYS_FILE when that is set.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY src ./src
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gateway \
    && mkdir -p /data /keys && chown gateway /data /keys
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels llm-gateway && rm -rf /wheels
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV LLM_GATEWAY_HOST=0.0.0.0 \
    LLM_GATEWAY_PORT=4000 \
    LLM_GATEWAY_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER gateway
WORKDIR /data
VOLUME ["/data"]
EXPOSE 4000
# /readyz answers 200 once the database does; no curl in the slim image, so Python asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:4000/readyz', timeout=4)"]
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["llm-gateway", "serve"]
