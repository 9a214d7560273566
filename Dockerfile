# petal in a container (docker-compose.yml, service `petal`): Debian 12 set up by exactly the
# README's command, scripts/setup.sh (Debian packages, the .venv, the CMake + Ninja build into
# build/). .dockerignore keeps build/, .venv/, .petal/, weights/, datasets and .env out of the
# context, so the image never depends on a developer's local state.
#   docker compose build petal
#   docker compose run --rm petal build/petal run experiments/flowers5.toml
FROM debian:bookworm

WORKDIR /opt/petal
COPY . .
RUN scripts/setup.sh

# .petal/ (the stage cache) and ~/.cache/petal are volumes in docker-compose.yml; datasets are
# mounted read-only at $PETAL_DATASETS.
ENV PETAL_DATASETS=/datasets
CMD ["build/petal", "--help"]
