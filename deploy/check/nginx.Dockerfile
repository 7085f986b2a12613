# The compose check's load balancer (deploy/compose_check.py): Debian's nginx on the locally built
# bookworm base, for machines that cannot fetch nginx:1.27-bookworm. Like the official image it
# reads /etc/nginx/conf.d/*.conf (docker-compose.yml mounts deploy/nginx.conf there) and logs to
# the container's output.
ARG BASE_IMAGE=agent-server-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
