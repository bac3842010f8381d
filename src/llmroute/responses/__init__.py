"""The OpenAI Responses API over the router: request and response models, translation, state."""
