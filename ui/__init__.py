"""The editing playground (``stylegate ui``): a small aiohttp web app in front of a running
gateway. It speaks gRPC to the gateway like any other client, so it never imports torch."""
