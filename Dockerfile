FROM python:3.11-slim

RUN useradd --create-home --uid 10001 camreach \
    && mkdir -p /data && chown camreach:camreach /data
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY bot ./bot
COPY handlers ./handlers
COPY jobs ./jobs
COPY alembic ./alembic
RUN pip install --no-cache-dir -e .

USER camreach
ENV CAMREACH_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["camreach"]
CMD ["run"]
