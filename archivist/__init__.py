"""archivist: fine-tuning and RAG over a company's own documents, on its own machine."""

__version__ = "0.1.0"
