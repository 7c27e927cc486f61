#!/bin/sh
# As the official redis image: protected mode off by default (a container is reached over its
# network, not loopback), so a redis-server given no config file serves other containers.
if [ "$1" = redis-server ]; then
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
