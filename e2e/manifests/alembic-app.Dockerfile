# The Alembic app of operator/tests/fixtures/alembic_app as a team would ship
# it: Python, Alembic with an async env.py on asyncpg, the migrations in the
# image. e2e/run.sh builds it from the repository root and loads it into kind
# as schemaop-alembic-app:e2e, for the ship test of spec.job.
FROM python:3.12-slim
RUN pip install --no-cache-dir alembic 'sqlalchemy[asyncio]' asyncpg psycopg2-binary
WORKDIR /app
COPY operator/tests/fixtures/alembic_app/ /app/
# A numeric user, so that the Job's runAsNonRoot can be checked.
USER 10001
