"""Static files (index.html, app.js, style.css) of the voxlane browser client."""
