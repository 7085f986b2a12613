# The compose check's PostgreSQL (deploy/compose_check.py): Debian's postgresql-15 on the locally
# built bookworm base, for machines that cannot fetch postgres:15-bookworm. It reads the same
# variables as the official image (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) and keeps its
# data in the same folder, so docker-compose.yml runs it unchanged.
ARG BASE_IMAGE=agent-server-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-start.sh /usr/local/bin/postgres-start
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
CMD ["postgres-start"]
