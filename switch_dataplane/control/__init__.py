"""The control plane, as a switch CPU runs it: admission, regions, flows, epochs, copies, leases.

``control_plane`` is the switch side, ``region_allocator`` its column allocator, and
``control_client`` the request/answer client that hosts and ``inc-switch stats`` use.
"""
