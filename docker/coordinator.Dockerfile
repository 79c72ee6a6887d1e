# The coordinator: gRPC on 50051, state in the database named by EDGEATLAS_DB.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeatlas edgeatlas
COPY protos protos
COPY agent agent
COPY coordinator coordinator
COPY predictor predictor
# setuptools needs every mapped package folder to exist; the dashboard's dependencies are not installed.
COPY dashboard dashboard
COPY console console
RUN pip install --no-cache-dir ".[coordinator]" && useradd --create-home edgeatlas && mkdir /data && chown edgeatlas /data
USER edgeatlas
ENV EDGEATLAS_DB=sqlite:////data/coordinator.db
EXPOSE 50051 8081
# 0.0.0.0 inside the container only; publish the port on the host's 127.0.0.1 (see compose.yaml). 8081: the
# health endpoint a load balancer checks; EDGEATLAS_ADVERTISE: where the other replicas reach this one.
CMD ["sh", "-c", "exec edgeatlas coordinator serve --db \"$EDGEATLAS_DB\" --listen 0.0.0.0:50051 --tokens-file /data/tokens.json --health-listen 0.0.0.0:8081 ${EDGEATLAS_ADVERTISE:+--advertise \"$EDGEATLAS_ADVERTISE\"}"]
