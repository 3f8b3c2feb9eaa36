"""What the server does with a transcript besides live transcription."""
