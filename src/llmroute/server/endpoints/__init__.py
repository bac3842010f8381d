"""The gateway's endpoints: one module each, each a small callable over a `GatewayRequest`.

An endpoint reads what it needs through the request (the body, the caller,
the model they may use), calls the router, and answers through
`llmroute.server.responses`; the app maps what it raises to an error
response.
"""
