# syntax=docker/dockerfile:1
# cloudroi's container images, built from this source tree:
#   docker build -t cloudroi .                                # the region service (cloudroi serve)
#   docker build --target lambda -t cloudroi-lambda .         # an AWS Lambda container image
# Both install the wheel built here with only its runtime dependencies (deploy/docker/install.sh,
# which tests/test_deploy.py runs the same way), and run as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the wheel, and a venv holding it with the s3 and geo extras ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY deploy/docker/install.sh /usr/local/bin/cloudroi-install
COPY pyproject.toml README.md ./
COPY cloudroi ./cloudroi
RUN sh /usr/local/bin/cloudroi-install /src /opt/venv s3,geo

# ---- the same venv plus the Lambda runtime interface client ---------------------------------
FROM build AS build-lambda
RUN sh /usr/local/bin/cloudroi-install /src /opt/venv s3,geo,lambda

# ---- what both images share: the base, an unprivileged user, the venv on PATH ---------------
FROM ${PYTHON_IMAGE} AS base
RUN groupadd --system --gid 10001 cloudroi \
    && useradd --system --uid 10001 --gid cloudroi --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin cloudroi
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# ---- AWS Lambda: docker build --target lambda ------------------------------------------------
FROM base AS lambda
COPY --from=build-lambda /opt/venv /opt/venv
WORKDIR /var/task
USER 10001:10001
ENTRYPOINT ["/opt/venv/bin/python", "-m", "awslambdaric"]
CMD ["cloudroi.serverless.handler"]

# ---- the region service (the default target) ------------------------------------------------
FROM base AS service
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /usr/local/bin/cloudroi-healthcheck
# Listen on every interface inside the container; publish the port to choose who can reach it.
ENV CLOUDROI_HOST=0.0.0.0 \
    CLOUDROI_PORT=8080
WORKDIR /srv
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "/usr/local/bin/cloudroi-healthcheck"]
CMD ["cloudroi", "serve"]
