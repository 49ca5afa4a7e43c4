FROM python:3.11-slim

RUN useradd --create-home --uid 10001 camreach \
    && mkdir -p /data && chown camreach:camreach /data
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY jobs ./jobs
COPY alembic ./alembic
# A normal (not editable) install, as `pip install .` or `pipx install .` from a clone: the
# wheel carries the migrations (alembic/ becomes bot/migrations), so the sources can go.
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /app
USER camreach
ENV CAMREACH_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["camreach"]
CMD ["run"]
