# chaosproxy in a container, to run as a sidecar in front of one upstream.
#
#   docker build -t aumai-chaos:0.1.0 .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/examples/compose/proxy.yaml:/etc/chaosproxy/proxy.yaml:ro" \
#     aumai-chaos:0.1.0
#
# The configuration is mounted at /etc/chaosproxy/proxy.yaml. Inside a container it
# must listen on 0.0.0.0 to be reachable, and the healthcheck asks the admin API at
# $CHAOSPROXY_HEALTHZ (port 8081 unless you change it). examples/ shows it as a
# docker-compose sidecar and in a Kubernetes pod.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHAOSPROXY_HEALTHZ=http://127.0.0.1:8081/healthz

# A numeric user, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin chaos

WORKDIR /src
COPY pyproject.toml README.md ./
COPY aumai_chaos ./aumai_chaos
COPY chaosproxy ./chaosproxy
RUN pip install . && rm -rf /src

# The ready-made examples, to mount or copy from: /etc/chaosproxy/examples/*.yaml
COPY configs /etc/chaosproxy/examples
WORKDIR /home/chaos

USER 10001:10001
EXPOSE 8080 8081

# Standard library only: the slim image has no curl. /healthz never needs the token.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD python -c "import os, urllib.request; \
urllib.request.urlopen(os.environ['CHAOSPROXY_HEALTHZ'], timeout=2)"

ENTRYPOINT ["chaosproxy"]
CMD ["run", "-c", "/etc/chaosproxy/proxy.yaml", "--watch"]
