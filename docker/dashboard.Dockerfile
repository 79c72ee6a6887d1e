# The dashboard: Streamlit on 8501, speaking to the coordinator's admin API (EDGEATLAS_COORDINATOR,
# EDGEATLAS_ADMIN_TOKEN); it never touches the database.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeatlas edgeatlas
COPY protos protos
COPY dashboard dashboard
COPY console console
# setuptools needs every mapped package folder to exist; their extras' dependencies are not installed.
COPY agent agent
COPY coordinator coordinator
COPY predictor predictor
RUN pip install --no-cache-dir ".[dashboard]" && useradd --create-home edgeatlas
USER edgeatlas
ENV EDGEATLAS_COORDINATOR=coordinator:50051
EXPOSE 8501
# 0.0.0.0 inside the container only; publish the port on the host's 127.0.0.1 (see compose.yaml).
CMD ["sh", "-c", "exec edgeatlas dashboard --coordinator \"$EDGEATLAS_COORDINATOR\" --host 0.0.0.0 --port 8501"]
