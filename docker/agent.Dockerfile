# The agent, with only the agent extra: no torch, no database drivers.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeatlas edgeatlas
COPY protos protos
COPY agent agent
# setuptools needs every mapped package folder to exist; their extras' dependencies are not installed.
COPY coordinator coordinator
COPY predictor predictor
COPY dashboard dashboard
COPY console console
RUN pip install --no-cache-dir ".[agent]" && useradd --create-home edgeatlas
USER edgeatlas
ENV EDGEATLAS_COORDINATOR=coordinator:50051
CMD ["sh", "-c", "exec edgeatlas agent run --coordinator \"$EDGEATLAS_COORDINATOR\" --state-dir /home/edgeatlas/state --name \"${EDGEATLAS_AGENT_NAME:-$(hostname)}\""]
