// The Socket.IO reference: the signaling backend of the classic Node.js WebRTC demo app (the seed app's
// backend/index.js), which is what a user would otherwise run. A plain object maps each room to its socket
// ids; `join-room` answers `all-users` with the others; offer/answer/ice-candidate go to one socket by id.
// No auth, no validation, no limits. PORT picks the port.
"use strict";
const { Server } = require("socket.io");

const io = new Server(Number(process.env.PORT || 4000), { transports: ["websocket"] });
const rooms = {};

io.on("connection", (socket) => {
  socket.on("join-room", (roomId) => {
    if (!rooms[roomId]) rooms[roomId] = [];
    rooms[roomId].push(socket.id);
    socket.data.roomId = roomId;
    socket.emit("all-users", rooms[roomId].filter((id) => id !== socket.id));
  });
  socket.on("offer", (payload) => {
    io.to(payload.userToCall).emit("offer", { sdp: payload.sdp, callerID: socket.id });
  });
  socket.on("answer", (payload) => {
    io.to(payload.callerID).emit("answer", { sdp: payload.sdp, id: socket.id });
  });
  socket.on("ice-candidate", (payload) => {
    io.to(payload.target).emit("ice-candidate", { candidate: payload.candidate, from: socket.id });
  });
  socket.on("disconnect", () => {
    const roomId = socket.data.roomId;
    if (rooms[roomId]) rooms[roomId] = rooms[roomId].filter((id) => id !== socket.id);
  });
});
