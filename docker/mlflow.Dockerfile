# The team's MLflow tracking server (docker-compose.yml, service `mlflow`): MLflow with the
# PostgreSQL driver (backend store) and boto3 (the S3 client behind --artifacts-destination s3://).
# MLFLOW_VERSION is the one scripts/requirements.txt pins for petal's own server and tests, so the
# team server speaks the REST API petal is tested against (tests/deploy checks they agree).
FROM python:3.11-slim-bookworm

ARG MLFLOW_VERSION=3.17.2
RUN pip install --no-cache-dir --disable-pip-version-check \
      "mlflow==${MLFLOW_VERSION}" \
      "psycopg2-binary==2.9.13" \
      "boto3==1.44.5" \
 && useradd --system --create-home --uid 10001 mlflow

USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
# The server's options (stores, host checks) are the compose service's `command`.
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
