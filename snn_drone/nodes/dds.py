"""Where DDS traffic may go: this machine's loopback unless the user asks for more.

Every process of the package that talks DDS (the nodes, `snn-drone launch`, record, play, the tests
and the benches) calls :func:`apply_localhost_defaults` before ``rclpy.init``:

- ``ROS_AUTOMATIC_DISCOVERY_RANGE`` defaults to ``LOCALHOST`` (no multicast discovery);
- with a LOCALHOST range and no profile of the user's own, Fast DDS reads
  config/fastdds_localhost.xml (shared memory + UDPv4 on 127.0.0.1 only, unicast discovery to
  127.0.0.1), so no packet goes to any other address.

To run a graph across machines set ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` (and, where multicast
does not pass, ``ROS_STATIC_PEERS`` with the other machines' addresses; or a Fast DDS profile of
your own): then nothing here changes the environment, and Fast DDS's defaults apply: UDPv4 between
machines, shared memory between processes of one machine (it tells machines apart by host name and
IPv4 addresses, so network namespaces with their own addresses talk UDP even with a shared
/dev/shm; test/test_ros_hosts.py checks the bytes on their interfaces). README, "Several machines".
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

DISCOVERY_RANGE = "ROS_AUTOMATIC_DISCOVERY_RANGE"
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
PROFILE_FILE = "fastdds_localhost.xml"


def localhost_profile() -> Path:
    """The package's loopback-only Fast DDS profile (config/fastdds_localhost.xml)."""
    from snn_drone.core.common.config import config_dir
    path = config_dir() / PROFILE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Fast DDS profile {path} is missing (expected next to config/train.yaml)")
    return path


def localhost_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The variables to add to ``environ`` (default: os.environ) to keep DDS on the loopback;
    variables the user set are never overridden."""
    env = os.environ if environ is None else environ
    add: dict[str, str] = {}
    rng = env.get(DISCOVERY_RANGE, "")
    if not rng:
        add[DISCOVERY_RANGE] = rng = "LOCALHOST"
    if rng == "LOCALHOST" and not any(env.get(v) for v in PROFILE_VARS):
        add[PROFILE_VARS[0]] = str(localhost_profile())
    return add


def apply_localhost_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :func:`localhost_defaults` in ``environ`` (default: os.environ); returns what was set."""
    env = os.environ if environ is None else environ
    add = localhost_defaults(env)
    env.update(add)
    return add
