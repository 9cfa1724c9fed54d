(subject, payload) => {
  console.log(subject);
  return payload;
};
